"""bench/speed: what a cached step costs next to a full one, measured and from FLOPs.

    python3 -m bench.speed                 # SD1.5 64x64 and 32x32, SDXL 64x64 latents (~15 min)
    python3 -m bench.speed --quick         # SD1.5 32x32 only, fewer rounds (~2 min)
    python3 -m bench.speed --models sd15-64 --repeats 9

Full-size U-Net architectures with random weights (demo/unet.py; its SD15/SDXL
configs reproduce the reference FLOP counts), fp32, batch 1, on this CPU.
Measured in one process after a warm-up, calls interleaved round by round:

  F  = the U-Net's own forward (no DeepCache code: the baseline step)
  R  = a refresh step: core.unet_forward over the whole U-Net, storing the deep feature
  I1 = a step at interval 1: core.call_unet (decision, timing) + the U-Net's own forward (PASSTHROUGH)
  S_b = a cached step of branch b: core.unet_forward of the shallow branch on the stored feature

Per-step ratios are medians of per-round ratios. Measured speed-up of interval N:
N*F / (R + (N-1)*S_b); ceiling from FLOPs (torch FlopCounterMode; the CPU attention
kernel counted by its q/k/v shapes): N / (1 + (N-1)*s_b) with s_b = FLOPs(shallow)/FLOPs(full).
efficiency = measured / ceiling; overhead at interval 1 = I1/F - 1.

Writes bench/results/speed.json and regenerates docs/benchmarks.md.
With COMFYUI_PATH set, the same measurement also runs on ComfyUI's own UNetModel
class (see bench/comfy_speed.py).
"""
from __future__ import annotations

import argparse
import gc
import os
import time

import torch

from .common import command_line, interleaved_times, machine, median_ratio, read_json, sibling, write_json

_core, _cost = sibling("core"), sibling("core.cost")
DeepCacheConfig, describe_unet, shared_store, unet_forward = (
    _core.DeepCacheConfig, _core.describe_unet, _core.shared_store, _core.unet_forward)
block_costs, branch_cost_fractions, estimated_speedup = (
    _cost.block_costs, _cost.branch_cost_fractions, _cost.estimated_speedup)
LdmOps, call_unet, open_call = _core.LdmOps, _core.call_unet, _core.open_call
U = sibling("demo.unet")
open_run = sibling("demo.sampling").open_run

INTERVALS = (2, 3, 5, 10)
BRANCHES = (0, 1, 2, 3)

# name -> (architecture, latent side, label)
MODELS = {
    "sd15-64": (U.SD15, 64, "SD1.5, 64x64 latent (512 px)"),
    "sd15-32": (U.SD15, 32, "SD1.5, 32x32 latent (256 px)"),
    "sdxl-64": (U.SDXL, 64, "SDXL, 64x64 latent (512 px)"),
    "sdxl-128": (U.SDXL, 128, "SDXL, 128x128 latent (1024 px)"),
    "tiny-sd15": (U.TINY_SD15, 16, "tiny SD1.5-shaped U-Net (test size)"),
    "tiny-sdxl": (U.TINY_SDXL, 16, "tiny SDXL-shaped U-Net (test size)"),
}
DEFAULT_MODELS = ("sd15-64", "sd15-32", "sdxl-64")
QUICK_MODELS = ("sd15-32",)


def model_inputs(arch: dict, side: int, batch: int = 1):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, arch.get("in_channels", 4), side, side, generator=gen)
    t = torch.full((batch,), 500.0)
    ctx = torch.randn(batch, 77, arch["context_dim"], generator=gen) if arch.get("context_dim") else None
    y = None
    if arch.get("num_classes") == "sequential":
        y = torch.randn(batch, arch["adm_in_channels"], generator=gen)
    elif arch.get("num_classes") is not None:
        y = torch.zeros(batch, dtype=torch.long)
    return x, t, ctx, y


def build_unet(arch: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    return U.UNetModel(**arch).eval().requires_grad_(False)


def measure_unet(unet, x, t, ctx, y, *, repeats: int, branches=BRANCHES, intervals=INTERVALS,
                 costs=None, log=print, make_ops=None, baseline_fn=None) -> dict:
    """Per-step timing ratios and FLOP ceilings of one U-Net at one input size.

    make_ops() builds the host's UNetOps (default LdmOps: demo/unet.py, ldm/sgm);
    baseline_fn() is the host's own forward (default unet(x, t, ctx, y))."""
    depth = describe_unet(unet).depth
    branches = [b for b in branches if b < depth]
    make_ops = make_ops or (lambda: LdmOps(unet, t, ctx, y))
    if costs is None:
        costs = block_costs(make_ops, x, depth)
    fractions = branch_cost_fractions(costs)
    keys = [("cond", tuple(x.shape))]

    with torch.no_grad():
        # a stored deep feature for every branch, from a refresh step of that branch
        caches = {}
        for b in branches:
            cache = shared_store(unet).open_run()
            cache.write(keys, unet_forward(make_ops(), x, depth, b)[1])
            caches[b] = cache
        refresh_cache = shared_store(unet).open_run()
        run1 = open_run(unet, DeepCacheConfig(interval=1), [1.0, 0.5, 0.0])

        def baseline():
            return baseline_fn() if baseline_fn is not None else unet(x, t, ctx, y)

        def refresh():
            out, deep = unet_forward(make_ops(), x, depth, 0)
            refresh_cache.write(keys, deep)
            return out

        def interval1():  # the per-call path, then the host's own forward
            run1.begin_evaluation()
            return call_unet(lambda: open_call(run1, keys, x), baseline, lambda call: (None, None))

        fns = {"F": baseline, "R": refresh, "I1": interval1}
        for b in branches:
            fns[f"S{b}"] = (lambda b=b: unet_forward(make_ops(), x, depth, b,
                                                     deep=caches[b].read(keys)))
        t0 = time.perf_counter()
        times = interleaved_times(fns, repeats=repeats, warmup=1)
        wall = time.perf_counter() - t0
        for c in list(caches.values()) + [refresh_cache]:
            c.close()
        run1.close()

    F = times["F"]
    med = lambda v: sorted(v)[len(v) // 2]
    r_refresh = median_ratio(times["R"], F)
    r_i1 = median_ratio(times["I1"], F)
    out = dict(
        full_gmacs=costs.total / 2e9, depth=depth, repeats=repeats, seconds_measuring=wall,
        seconds_median={k: med(v) for k, v in times.items()},
        seconds_all=times,
        refresh_over_full=r_refresh, overhead_interval1=r_i1 - 1.0, overhead_refresh=r_refresh - 1.0,
        branches={})
    for b in branches:
        s_meas = median_ratio(times[f"S{b}"], F)
        s_flop = fractions[b]
        rows = {}
        for n in intervals:
            measured = n / (r_refresh + (n - 1) * s_meas)
            ceiling = estimated_speedup(n, s_flop)
            rows[str(n)] = dict(measured=measured, ceiling=ceiling, efficiency=measured / ceiling)
        out["branches"][str(b)] = dict(cached_over_full_measured=s_meas, cached_over_full_flops=s_flop,
                                       intervals=rows)
        log(f"    b{b}: S/F measured {s_meas:.4f}, FLOPs {s_flop:.4f}; " + ", ".join(
            f"N{n} x{r['measured']:.2f}/{r['ceiling']:.2f} ({r['efficiency']:.3f})" for n, r in rows.items()))
    log(f"    F {out['seconds_median']['F']:.3f} s, refresh/F {r_refresh:.4f}, interval-1 overhead "
        f"{100 * (r_i1 - 1):+.2f} %  ({wall:.0f} s)")
    return out


def run_model(name: str, repeats: int, log=print) -> dict:
    arch, side, label = MODELS[name]
    log(f"  {name}: {label}")
    t0 = time.perf_counter()
    unet = build_unet(arch)
    x, t, ctx, y = model_inputs(arch, side)
    res = measure_unet(unet, x, t, ctx, y, repeats=repeats, log=log)
    res.update(name=name, label=label, latent=side, params_m=sum(p.numel() for p in unet.parameters()) / 1e6,
               seconds_total=time.perf_counter() - t0)
    del unet
    gc.collect()
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.speed", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", choices=sorted(MODELS), default=None)
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds per model (default 7, quick 3)")
    ap.add_argument("--quick", action="store_true", help="SD1.5 32x32 only, 3 rounds")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--out", default="speed.json", help="file name under bench/results/")
    ap.add_argument("--no-docs", action="store_true", help="do not regenerate docs/benchmarks.md")
    ap.add_argument("--comfy-only", action="store_true",
                    help="with COMFYUI_PATH: only the ComfyUI measurement, merged into the existing results file")
    ap.add_argument("--comfy-steps", type=int, default=6, help="sampler steps of the ComfyUI whole-run timing")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    models = args.models or (QUICK_MODELS if args.quick else DEFAULT_MODELS)
    repeats = args.repeats or (3 if args.quick else 7)
    info = machine()
    print(f"bench.speed on {info['cpu']}, {info['cores']} cores, torch {info['torch']}; rounds {repeats}")
    results = dict(machine=info, command=command_line("bench.speed", argv), models={})
    if args.comfy_only:
        if not os.environ.get("COMFYUI_PATH"):
            ap.error("--comfy-only needs COMFYUI_PATH")
        results = read_json(args.out) or results
    else:
        for name in models:
            results["models"][name] = run_model(name, repeats)
    if os.environ.get("COMFYUI_PATH"):
        from . import comfy_speed
        results["comfyui"] = comfy_speed.run(os.environ["COMFYUI_PATH"], repeats, steps=args.comfy_steps)
        results["comfyui"].update(machine=machine(), command="COMFYUI_PATH=... " + command_line("bench.speed", argv))
    path = write_json(args.out, results)
    print(f"wrote {path}")
    if not args.no_docs and args.out == "speed.json":
        from . import report
        print(f"wrote {report.write()}")
    return results


if __name__ == "__main__":
    main()
