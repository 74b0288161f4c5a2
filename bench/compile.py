"""bench/compile: DeepCache under ComfyUI's stock torch.compile (TorchCompileModel's wrapper,
backend inductor), in a real ComfyUI (COMFYUI_PATH), on full-size SD1.5 with random weights.

Each variant lives in a process of its own (dynamo's code caches and recompile limits are per
process, so variants cannot spoil each other's) and the coordinator runs them in turns:

    baseline     TorchCompileModel on the plain model
    node_after   TorchCompileModel, then the DeepCache node (interval 3, branch 0)
    node_before  the DeepCache node, then TorchCompileModel

The first run of each compiles; its time is reported apart. Every later run reports the
dynamo graphs it added (torch._dynamo counters: a recompilation is a new graph).

    COMFYUI_PATH=/path/to/ComfyUI python3 -m bench.compile --rounds 3
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time

from .common import ROOT, command_line, machine, write_json

VARIANTS = ("baseline", "node_after", "node_before")


# -- worker: one variant, runs on request ----------------------------------------------------------
def worker(args) -> int:
    from importlib import import_module

    import torch

    from .comfy_speed import INTERVAL, PACKAGE, import_comfy, load_plugin, run_ceiling, sd15_patcher
    if args.attention == "pytorch":  # what ComfyUI picks on NVIDIA GPUs
        sys.path.insert(0, os.environ["COMFYUI_PATH"])
        import comfy.cli_args
        comfy.cli_args.args.use_pytorch_cross_attention = True
    import_comfy(os.environ["COMFYUI_PATH"])
    load_plugin()
    import comfy.sample
    from comfy_api.torch_helpers import set_torch_compile_wrapper
    from torch._dynamo.utils import counters
    node = import_module(f"{PACKAGE}.nodes.deepcache_node").DeepCacheNode
    torch.set_num_threads(args.threads)

    def deepcache(m):
        return node.execute(m, cache_interval=INTERVAL, cache_branch=0, start_percent=0.0, end_percent=1.0,
                            schedule="uniform").result[0]

    def compiled(m):
        m = m.clone()
        set_torch_compile_wrapper(m, backend=args.backend)
        return m

    model = sd15_patcher()
    model = {"baseline": compiled, "node_after": lambda m: deepcache(compiled(m)),
             "node_before": lambda m: compiled(deepcache(m))}[args.worker](model)
    gen = torch.Generator().manual_seed(1)
    latent = torch.zeros(1, 4, args.side, args.side)
    noise = comfy.sample.prepare_noise(latent, 42)
    pos = [[torch.randn(1, 77, 768, generator=gen), {}]]
    neg = [[torch.randn(1, 77, 768, generator=gen), {}]]
    summaries = []
    log = import_module(f"{PACKAGE}.core.call").log
    log.setLevel("INFO")
    log.addHandler(_Collect(summaries))
    ceiling = None
    if args.worker != "baseline":
        routes = import_module(f"{PACKAGE}.nodes.routes")
        s = routes.arch_costs("sd15", args.side * 8, args.side * 8)["branches"][0]["cached_fraction"]
        ceiling = run_ceiling(args.steps, s)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        graphs = counters["stats"]["unique_graphs"]
        t0 = time.perf_counter()
        with torch.no_grad():
            comfy.sample.sample(model, noise, args.steps, 7.0, "euler", "normal", pos, neg, latent, seed=42,
                                disable_pbar=True)
        seconds = time.perf_counter() - t0
        print(json.dumps(dict(seconds=seconds, graphs_added=counters["stats"]["unique_graphs"] - graphs,
                              graphs=counters["stats"]["unique_graphs"], ceiling=ceiling,
                              summary=summaries[-1] if summaries else None)), flush=True)
    return 0


class _Collect(logging.Handler):
    """Keeps the run summaries (the node logs one per run)."""

    def __init__(self, out):
        super().__init__(logging.INFO)
        self.out = out

    def emit(self, record):
        message = record.getMessage()
        if message.startswith("DeepCache: "):
            self.out.append(message)


# -- coordinator -----------------------------------------------------------------------------------
def _start(variant, args):
    cmd = [sys.executable, "-m", "bench.compile", "--worker", variant, "--steps", str(args.steps),
           "--side", str(args.side), "--threads", str(args.threads), "--attention", args.attention,
           "--backend", args.backend]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _run(proc) -> dict:
    proc.stdin.write("run\n")
    proc.stdin.flush()
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("a worker stopped")
        if line.startswith("{"):
            return json.loads(line)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--side", type=int, default=32, help="latent side (32 = 256 px)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attention", choices=("host", "pytorch"), default="host",
                    help="host: what ComfyUI picks on this machine; pytorch: --use-pytorch-cross-attention")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--backend", default="inductor", help="torch.compile backend (eager: a quick check)")
    ap.add_argument("--worker", choices=VARIANTS)
    ap.add_argument("--out", default="compile.json")
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    if not os.environ.get("COMFYUI_PATH"):
        print("set COMFYUI_PATH to a ComfyUI checkout (and run with its Python)", file=sys.stderr)
        return 2
    variants = args.variants.split(",")
    procs = {v: _start(v, args) for v in variants}
    first, runs = {}, {v: [] for v in variants}
    try:
        for v in variants:
            first[v] = _run(procs[v])
            print(f"[compile run] {v}: {first[v]['seconds']:.1f} s, {first[v]['graphs']} graphs", flush=True)
        for r in range(args.rounds):
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            for v in order:
                runs[v].append(_run(procs[v]))
                print(f"[round {r + 1}] {v}: {runs[v][-1]['seconds']:.1f} s, +{runs[v][-1]['graphs_added']} graphs"
                      + (f"; {runs[v][-1]['summary']}" if runs[v][-1]["summary"] else ""), flush=True)
    finally:
        for p in procs.values():
            try:
                p.stdin.write("quit\n")
                p.stdin.close()
            except OSError:
                pass
            p.wait(timeout=60)
    result = dict(machine=machine(), command=command_line("bench.compile", argv), steps=args.steps,
                  side=args.side, attention=args.attention, backend=args.backend, rounds=args.rounds, variants={})
    base = [x["seconds"] for x in runs.get("baseline", [])]
    for v in variants:
        secs = [x["seconds"] for x in runs[v]]
        row = dict(first_run_seconds=first[v]["seconds"], median_seconds=statistics.median(secs), seconds=secs,
                   compile_seconds=first[v]["seconds"] - statistics.median(secs),
                   graphs_after_first_run=[x["graphs_added"] for x in runs[v]], graphs=first[v]["graphs"],
                   summary=runs[v][-1]["summary"], ceiling=first[v]["ceiling"])
        if v != "baseline" and base:
            row["speedup"] = statistics.median(b / s for b, s in zip(base, secs))
            row["efficiency"] = row["speedup"] / row["ceiling"]
        result["variants"][v] = row
    path = write_json(args.out, result)
    print("\n| variant | first run (compile) | later runs, median | graphs added after run 1 | "
          "speed-up vs compiled baseline | FLOP ceiling |\n|---|---|---|---|---|---|")
    for v, row in result["variants"].items():
        sp = f"x{row['speedup']:.2f} ({row['efficiency']:.2f} of ceiling)" if "speedup" in row else "-"
        ceil = f"x{row['ceiling']:.2f}" if row["ceiling"] else "-"
        print(f"| {v} | {row['first_run_seconds']:.1f} s | {row['median_seconds']:.1f} s | "
              f"{row['graphs_after_first_run']} | {sp} | {ceil} |")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
