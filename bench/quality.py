"""bench/quality: how much DeepCache changes the demo model's pictures.

    python3 -m bench.quality            # 100 samples, N in {2,3,5,10}, b in {0..3}, both schedules (~10 min)
    python3 -m bench.quality --quick    # 50 samples, N in {3,5,10}, b 0 and 1, no (c, p) sweep

For each schedule (uniform, non-uniform with the paper's c=0.3 T, p=1.4), interval N
and branch b: DDIM-50 (Euler) samples from the same noise and labels as the full
U-Net, through demo/sampling.py (the core's RunState path); PSNR against the
full-schedule images, accuracy of the digit classifier on the requested digit,
the FLOP speed-up of the run (evaluations weighted by the FLOP cost of a cached
step) and the measured wall-time ratio.

The non-uniform (c, p) is also tuned the paper's way for N=5 and N=10: a grid
searched at branch 0 on another seed (the tuning seed, half the samples), then
evaluated on the evaluation seed.

Writes bench/results/quality.json, docs/figures/frontier.png and
docs/figures/schedules.png, and regenerates docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import time

import torch

from .common import FIGURES, command_line, machine, sibling, write_json

DeepCacheConfig = sibling("core").DeepCacheConfig
plan_steps = sibling("core.schedule").plan_steps
DigitClassifier = sibling("demo.data").DigitClassifier
_m = sibling("demo.model")
IMAGE_SIZE, NULL_LABEL, ddim_sigmas, load_model, sigma_to_t = (
    _m.IMAGE_SIZE, _m.NULL_LABEL, _m.ddim_sigmas, _m.load_model, _m.sigma_to_t)
_s = sibling("demo.sampling")
cost_fractions, plan_string, psnr, sample_euler = _s.cost_fractions, _s.plan_string, _s.psnr, _s.sample_euler
_demo_main = sibling("demo.__main__")
make_inputs = _demo_main.make_inputs

INTERVALS = (2, 3, 5, 10)
BRANCHES = (0, 1, 2, 3)
SCHEDULES = ("uniform", "non-uniform")
CENTERS = (0.1, 0.2, 0.3, 0.4, 0.5)
POWERS = (1.2, 1.4, 1.6, 2.0)


def evaluate(model, noise, labels, sigmas, config, fractions, reference, clf, guidance):
    kw = dict(sigma_to_t=sigma_to_t, guidance=guidance, null_label=NULL_LABEL)
    res = sample_euler(model, noise, labels, sigmas, config=config,
                       cost_fraction=fractions[config.branch] if config is not None else None, **kw)
    row = dict(seconds=res.seconds, accuracy=clf.accuracy(res.images, labels))
    if config is not None:
        s = res.summary
        row.update(interval=config.interval, branch=config.branch, schedule=config.schedule,
                   center=config.center, power=config.power, psnr=psnr(res.images, reference),
                   flop_speedup=res.flop_speedup, full_evals=s.full_calls, cached_evals=s.cached_calls,
                   plan=plan_string(res.plan))
    return row, res.images


def tune_nonuniform(model, sigmas, fractions, clf, guidance, per_class, seed, intervals, branch, log):
    """The paper's grid search of (c, p), on the tuning seed."""
    noise, labels = make_inputs(per_class, seed)
    kw = dict(sigma_to_t=sigma_to_t, guidance=guidance, null_label=NULL_LABEL)
    ref = sample_euler(model, noise, labels, sigmas, **kw).images
    best, grid = {}, []
    for n in intervals:
        seen_plans = {}
        for c in CENTERS:
            for p in POWERS:
                cfg = DeepCacheConfig(interval=n, branch=branch, schedule="non-uniform", center=c, power=p)
                plan = plan_string(plan_steps(cfg, len(sigmas) - 1, range(len(sigmas) - 1)))
                if plan not in seen_plans:
                    row, _ = evaluate(model, noise, labels, sigmas, cfg, fractions, ref, clf, guidance)
                    seen_plans[plan] = row["psnr"]
                grid.append(dict(interval=n, center=c, power=p, psnr=seen_plans[plan], plan=plan))
        rows = [g for g in grid if g["interval"] == n]
        top = max(rows, key=lambda g: g["psnr"])
        best[n] = (top["center"], top["power"])
        log(f"  tuned non-uniform N={n}: c={top['center']}, p={top['power']} ({top['psnr']:.2f} dB on seed {seed})")
    return best, grid


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.quality", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=None, help="samples per digit (default 10, quick 5)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--intervals", type=int, nargs="+", default=None)
    ap.add_argument("--branches", type=int, nargs="+", default=None)
    ap.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the demo's)")
    ap.add_argument("--seed", type=int, default=0, help="evaluation seed")
    ap.add_argument("--tune-seed", type=int, default=1, help="seed of the (c, p) grid search")
    ap.add_argument("--no-tune", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--out", default="quality.json", help="file name under bench/results/")
    ap.add_argument("--figures", default=FIGURES, help="folder for the PNGs ('' for none)")
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    guidance = _demo_main.DEFAULT_GUIDANCE if args.guidance is None else args.guidance
    per_class = args.per_class or (5 if args.quick else 10)
    intervals = args.intervals or ((3, 5, 10) if args.quick else INTERVALS)
    branches = args.branches or ((0, 1) if args.quick else BRANCHES)
    tune = not (args.no_tune or args.quick)
    log = lambda *a: print(*a, flush=True)
    t_start = time.perf_counter()

    model = load_model(args.weights)
    clf = DigitClassifier()
    sigmas = ddim_sigmas(args.steps)
    noise, labels = make_inputs(per_class, args.seed)
    b = noise.shape[0] * (2 if guidance != 1.0 else 1)
    fractions = cost_fractions(model, torch.zeros(b, 1, IMAGE_SIZE, IMAGE_SIZE), torch.zeros(b),
                               y=torch.zeros(b, dtype=torch.long))
    info = machine()
    log(f"bench.quality on {info['cpu']}: {len(labels)} samples, DDIM-{args.steps}, guidance {guidance}")
    kw = dict(sigma_to_t=sigma_to_t, guidance=guidance, null_label=NULL_LABEL)
    sample_euler(model, noise[:8], labels[:8], sigmas[-4:], **kw)  # warm-up
    base_row, reference = evaluate(model, noise, labels, sigmas, None, fractions, None, clf, guidance)
    log(f"  full U-Net: accuracy {base_row['accuracy']:.1%}, {base_row['seconds']:.2f} s")

    best, grid = ({}, [])
    if tune:
        best, grid = tune_nonuniform(model, sigmas, fractions, clf, guidance, max(per_class // 2, 3),
                                     args.tune_seed, [n for n in intervals if n >= 5], 0, log)
    rows = []
    for n in intervals:
        for br in branches:
            configs = [DeepCacheConfig(interval=n, branch=br, schedule=s) for s in SCHEDULES]
            if n in best:
                c, p = best[n]
                configs.append(DeepCacheConfig(interval=n, branch=br, schedule="non-uniform", center=c, power=p))
            for cfg in configs:
                row, _ = evaluate(model, noise, labels, sigmas, cfg, fractions, reference, clf, guidance)
                row["wall_ratio"] = base_row["seconds"] / row["seconds"]
                row["tuned"] = cfg.schedule == "non-uniform" and (cfg.center, cfg.power) != (0.3, 1.4)
                rows.append(row)
                log(f"  N={n:2d} b={br} {cfg.schedule:11s} c={cfg.center:.1f} p={cfg.power:.1f}: "
                    f"PSNR {row['psnr']:6.2f} dB, accuracy {row['accuracy']:.1%}, "
                    f"x{row['flop_speedup']:.2f} FLOPs, x{row['wall_ratio']:.2f} wall  {row['plan']}")
    result = dict(machine=info, command=command_line("bench.quality", argv),
                  samples=len(labels), steps=args.steps, guidance=guidance, seed=args.seed,
                  tune_seed=args.tune_seed if tune else None, cost_fractions=fractions,
                  classifier_held_out_accuracy=clf.held_out_accuracy, baseline=base_row, rows=rows,
                  tuned=({str(k): v for k, v in best.items()}), tuning_grid=grid,
                  seconds_total=time.perf_counter() - t_start)
    path = write_json(args.out, result)
    log(f"wrote {path}")
    if args.figures:
        from . import figures
        for p in figures.quality_figures(result, args.figures):
            log(f"wrote {p}")
    if not args.no_docs and args.out == "quality.json":
        from . import report
        log(f"wrote {report.write()}")
    return result


if __name__ == "__main__":
    main()
