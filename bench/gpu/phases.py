"""One phase: one model built, run in the eager mode or in the compiled mode and as CUDA graphs, then freed."""
from __future__ import annotations

import gc
import time

import torch

from .forwards import Forwards
from .model import MODELS, Setup, make_setup
from .output import write
from .runs import Bench


def _model_entry(results, s: Setup) -> dict:
    return results["models"].setdefault(s.name, dict(
        label=s.label, short=s.name.upper().replace("SD15", "SD1.5") if not s.name.startswith("tiny") else s.name,
        params_m=s.params_m, depth=s.depth, latent=list(s.noise.shape[-2:]),
        flops=dict(full_call_gflop=s.full_gflop, cached_fraction={str(b): f for b, f in enumerate(s.fractions)}),
        modes={}))


def run_model_phase(bench: Bench, results: dict, name: str, modes) -> None:
    """One model in the eager mode, or in the compiled mode and then as CUDA graphs; the model is built for
    the phase and freed after it (so peak memory is one model's)."""
    device = bench.device
    need = (MODELS[name][3] if device.type == "cuda" else 1.0) if modes == ["eager"] else 0.0
    if bench.left() < need + bench.margin:
        results["skipped"].append(f"{name} {'+'.join(modes)}: budget ({bench.left():.0f} s left)")
        bench.log(f"skip {name} {'+'.join(modes)}: {bench.left():.0f} s left")
        return
    try:
        _model_phase(bench, results, name, modes)
    finally:  # the phase's model, graphs and compiled code are gone by now: free their memory
        t0 = time.perf_counter()
        try:
            torch._dynamo.reset()
        except Exception:
            pass
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        bench.log(f"{name} {'+'.join(modes)}: done, freed in {time.perf_counter() - t0:.1f} s")


def _model_phase(bench: Bench, results: dict, name: str, modes) -> None:
    args, log, device = bench.args, bench.log, bench.device
    s = make_setup(name, args.steps, device, bench.dtype, args.guidance)
    entry = _model_entry(results, s)
    log(f"{name}: {s.label}, {s.params_m:.0f} M parameters, {s.full_gflop:.0f} GFLOP per call (batch 2), "
        f"S(b) = {', '.join(f'{f:.3f}' for f in s.fractions[:4])} ..., built in {s.build_s:.1f} s")
    variants = [v for v in bench.variants if v.branch < s.depth]
    if modes != ["eager"]:
        variants = [v for v in variants if v.baseline or v.branch in args.compile_branches]
    base_fw = None
    for mode in modes:
        if mode == "graphs":
            if device.type != "cuda":
                results["skipped"].append(f"{name} graphs: CUDA graphs need a CUDA device")
                log(f"skip {name} graphs: no CUDA device")
                continue
            base_fw = base_fw or Forwards(s, "eager", device)
            base_res = entry["modes"].get(base_fw.mode, {}).get("variants", {})
            vs = [v for v in variants if v.key in base_res] if base_fw.mode != "eager" else variants
            fw = Forwards(s, "graphs", device, base=base_fw)
            last = max((r["median_run_s"] for r in base_res.values()), default=1.0)
            graphs = {g for v in vs for g in v.graphs}
            need = bench.first_call_need(fw, graphs) + 2 * len(vs) * last * (args.repeats + 1)
            if bench.left() < need + bench.margin:
                results["skipped"].append(f"{name} graphs: budget ({bench.left():.0f} s left, needs ~{need:.0f} s)")
                log(f"skip {name} graphs: {bench.left():.0f} s left, needs about {need:.0f} s")
                continue
        elif mode == "compiled":
            fw = Forwards(s, "compiled", device, backend=args.backend)
            need = bench.first_call_need(fw, ["plain", "full-b0", "shallow-b0"])
            if bench.left() < need + bench.margin:
                results["skipped"].append(
                    f"{name} compiled: budget ({bench.left():.0f} s left, compiling needs ~{need:.0f} s)")
                log(f"skip {name} compiled (and its graphs): {bench.left():.0f} s left, compiling needs about "
                    f"{need:.0f} s")
                break
            base_fw, vs = fw, variants
        else:
            fw, vs = Forwards(s, "eager", device), variants
        log(f"{name} {mode}: {len(vs)} variants")
        res = entry["modes"].setdefault(mode, {})
        if mode == "graphs":
            res["over"] = base_fw.mode
        if mode == "compiled":
            res["backend"] = args.backend
        bench.run_mode(s, fw, vs, res)
        write(args.out, results)
