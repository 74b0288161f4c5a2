"""The command line: its arguments and defaults, the phases in order under the budget, the results file."""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch

from ..common import RESULTS, command_line
from . import __doc__ as DESCRIPTION
from .budget import Alarm, BudgetExceeded
from .forwards import MODES
from .model import MODELS
from .output import gpu_machine, write
from .phases import run_model_phase
from .runs import Bench
from .tables import first_deepcache_run, first_run_table, table

DEFAULT_OUT = os.path.join(RESULTS, "gpu.json")


def parse(argv):
    ap = argparse.ArgumentParser(prog="python3 -m bench.gpu", description=DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true",
                    help="CPU, tiny U-Nets, 8x8 latent, 5 steps, fp32, compile backend 'eager' (CI)")
    ap.add_argument("--models", nargs="+", choices=sorted(MODELS), default=None,
                    help="default sd15 sdxl (smoke: tiny-sd15 tiny-sdxl), in this order")
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    ap.add_argument("--steps", type=int, default=None, help="sampler steps (default 20, smoke 5)")
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds after the first run (default 3, smoke 1)")
    ap.add_argument("--intervals", nargs="+", type=int, default=[3, 5])
    ap.add_argument("--branches", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--compile-models", nargs="+", choices=sorted(MODELS), default=None,
                    help="models of the compiled and graphs modes (default all; smoke: the first)")
    ap.add_argument("--compile-branches", nargs="+", type=int, default=None,
                    help="branches of the compiled and graphs modes (default all; smoke: the first)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds this script may take (default 280, smoke 300); it skips what would not fit")
    ap.add_argument("--device", default=None, help="default cuda (smoke: cpu)")
    ap.add_argument("--dtype", choices=("float16", "bfloat16", "float32"), default=None,
                    help="default float16 (smoke: float32)")
    ap.add_argument("--backend", default=None, help="torch.compile backend (default inductor, smoke eager)")
    ap.add_argument("--guidance", type=float, default=7.0)
    ap.add_argument("--out", default=None, help=f"results file (default {DEFAULT_OUT}; smoke: a temp file)")
    ap.add_argument("--table", metavar="JSON", default=None, help="print the tables of a results file and exit")
    args = ap.parse_args(argv)
    smoke = args.smoke
    args.models = args.models or (["tiny-sd15", "tiny-sdxl"] if smoke else ["sd15", "sdxl"])
    if args.compile_models is None:  # dynamo alone takes ~10 s a U-Net graph on a CPU: smoke compiles 3 graphs
        args.compile_models = args.models[:1] if smoke else list(args.models)
    if args.compile_branches is None:
        args.compile_branches = args.branches[:1] if smoke else list(args.branches)
    args.steps = args.steps or (5 if smoke else 20)
    args.repeats = args.repeats if args.repeats is not None else (1 if smoke else 3)
    args.budget = args.budget if args.budget is not None else (300.0 if smoke else 280.0)
    args.device = args.device or ("cpu" if smoke else "cuda")
    args.dtype = args.dtype or ("float32" if smoke else "float16")
    args.backend = args.backend or ("eager" if smoke else "inductor")
    if args.out is None:
        args.out = os.path.join(tempfile.gettempdir(), "deepcache_gpu_smoke.json") if smoke else DEFAULT_OUT
    return ap, args


def main(argv=None) -> dict:
    ap, args = parse(argv)
    if args.table:
        with open(args.table) as f:
            data = json.load(f)
        print(table(data) + "\n\n" + first_run_table(data))
        return data
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.exit(2, "bench.gpu: no CUDA device here, so there is nothing to measure (nothing was written); "
                   "python3 -m bench.gpu --smoke runs the CPU check with tiny U-Nets\n")
    dtype = getattr(torch, args.dtype)
    start = time.perf_counter()

    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')} {time.perf_counter() - start:6.1f}s] {msg}", flush=True)

    bench = Bench(args, device, dtype, log, start)
    results = dict(
        machine=gpu_machine(device), command=command_line("bench.gpu", argv), smoke=args.smoke,
        settings=dict(models=args.models, modes=args.modes, steps=args.steps, repeats=args.repeats,
                      intervals=args.intervals, branches=args.branches, compile_models=args.compile_models,
                      compile_branches=args.compile_branches, budget_s=args.budget, device=str(device),
                      dtype=args.dtype, batch=2, guidance=args.guidance, compile_backend=args.backend,
                      compile_mode="default", sampler="Euler, Karras sigmas over SD's training range"),
        models={}, skipped=[], complete=False)
    m = results["machine"]
    log(f"bench.gpu on {m.get('gpu', m['cpu'])}, torch {m['torch']}, CUDA {m['cuda']}; budget {args.budget:.0f} s; "
        f"writing {args.out}")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
    alarm = Alarm(args.budget)
    now = "start"
    try:
        with torch.no_grad():
            # eager first for every model (cheap, and the reference of the others), then compiled + graphs
            phases = [("eager", n) for n in args.models] if "eager" in args.modes else []
            phases += [("compiled", n) for n in args.models if n in args.compile_models]
            for kind, name in phases:
                now = f"{kind} {name}"
                want = [md for md in (("eager",) if kind == "eager" else ("compiled", "graphs")) if md in args.modes]
                if not want:
                    continue
                run_model_phase(bench, results, name, want)  # writes the results after each mode it ran
        results["complete"] = not results["skipped"] and not any(
            r.get("skipped") for m in results["models"].values() for r in m["modes"].values())
    except BudgetExceeded:
        alarm.disarm()
        results["skipped"].append(f"stopped by the {args.budget:.0f} s budget during {now}")
        log(f"budget of {args.budget:.0f} s reached during {now}: stopping, keeping what was measured")
    finally:
        alarm.disarm()
    results["elapsed_s"] = time.perf_counter() - start
    results["first_deepcache_run"] = first_deepcache_run(results)
    results = write(args.out, results)
    print("\n" + results["table_md"] + "\n\n" + results["first_run_table_md"])
    if results["skipped"]:
        print("\nskipped: " + "; ".join(results["skipped"]))
    log(f"wrote {args.out}")
    return results
