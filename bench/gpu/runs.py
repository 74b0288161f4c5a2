"""The runs of one mode: first runs within the budget, interleaved timed rounds, and each variant's figures."""
from __future__ import annotations

import statistics
import time
from typing import Optional

import torch

from ..common import sibling
from .forwards import Forwards
from .model import Setup
from .output import GIB
from .sampling import Variant, make_variants, sample

speedup_from_counts = sibling("core.cost").speedup_from_counts

# a full U-Net graph's first call (dynamo + backend), seconds per leaf module before one was measured
COMPILE_PRIOR = {"inductor": 0.12, "eager": 0.02}


def _compare(a: torch.Tensor, b: torch.Tensor) -> dict:
    d = (a - b).abs()
    return dict(equal=bool(torch.equal(a, b)), max_abs=float(d.max()),
                rel_l2=float(d.norm() / b.norm().clamp(min=1e-30)))


def _median(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None



class Bench:
    def __init__(self, args, device, dtype, log, t0: float):
        """t0: the perf_counter time the budget counts from."""
        self.args, self.device, self.dtype, self.log = args, device, dtype, log
        self.t0 = t0
        self.variants = make_variants(args.intervals, args.branches)
        self.outputs: dict = {}      # (model, mode, variant key) -> final latent
        self.eager_base: dict = {}   # model -> eager baseline median run seconds
        self.compile_rate = None     # seconds per leaf module of a full graph's first call, as measured
        self.margin = 2.0 if args.smoke else 10.0

    def left(self) -> float:
        return self.args.budget - (time.perf_counter() - self.t0)

    def first_call_need(self, fw: Forwards, names) -> float:
        """Seconds the first calls of these graphs should take (0 in eager mode)."""
        new = fw.new(names)
        if fw.mode == "eager" or not new:
            return 0.0
        if fw.mode == "graphs":
            return 3.0 * len(new)
        rate = self.compile_rate or COMPILE_PRIOR.get(fw.backend, COMPILE_PRIOR["inductor"])
        return sum(rate * fw.s.leaves * (0.35 if n.startswith("shallow") else 1.0) for n in new)

    def learn(self, fw: Forwards) -> None:
        whole = [st["seconds"] for n, st in fw.stats.items()
                 if st.get("kind") == "compile" and not n.startswith("shallow") and "error" not in st]
        if whole:
            self.compile_rate = max(whole) / fw.s.leaves

    def run_mode(self, s: Setup, fw: Forwards, variants, res: dict) -> None:
        """First run of each variant (skipping those the budget cannot pay for), then interleaved timed rounds;
        res (the mode's entry in the results) is filled as it goes."""
        log, mode = self.log, fw.mode
        res.update(variants={}, skipped={}, first_calls=fw.stats)
        runs: dict = {}
        t_mode = time.perf_counter()
        for v in variants:
            need = self.first_call_need(fw, v.graphs)
            if self.left() < need + self.margin:
                res["skipped"][v.key] = f"budget: {self.left():.0f} s left, its first run needs about {need:.0f} s"
                log(f"{s.name} {mode}: skip {v.label} ({res['skipped'][v.key]})")
                continue
            new = fw.new(v.graphs)
            try:
                r = sample(s, fw, v, self.device)
            except Exception as e:
                res["skipped"][v.key] = f"error: {type(e).__name__}: {e}"[:500]
                log(f"{s.name} {mode}: {v.label} failed: {res['skipped'][v.key]}")
                continue
            first = sum(fw.stats[n]["seconds"] for n in new if n in fw.stats)
            runs[v.key] = dict(v=v, first=r, timed=[], first_graphs=new, first_call_s=first)
            self.learn(fw)
            log(f"{s.name} {mode}: {v.label}: first run {r['wall_s']:.2f} s"
                + (f" ({', '.join(new)} first calls {first:.1f} s)" if new and mode != "eager" else "")
                + (f"; DeepCache OFF: {r['disabled']}" if r["disabled"] else ""))
            res["variants"][v.key] = self.summarize(s, mode, v, runs[v.key], runs.get("baseline"))
        last_round = None
        for rnd in range(self.args.repeats):
            if rnd and last_round is not None and self.left() < last_round + self.margin:
                res["rounds_note"] = f"stopped after {rnd} rounds: {self.left():.0f} s left"
                log(f"{s.name} {mode}: {res['rounds_note']}")
                break
            t_round = time.perf_counter()
            keys = list(runs)
            k = rnd % max(len(keys), 1)
            for key in keys[k:] + keys[:k]:
                try:
                    runs[key]["timed"].append(sample(s, fw, runs[key]["v"], self.device))
                except Exception as e:
                    res["skipped"][key] = f"error in a timed run: {type(e).__name__}: {e}"[:500]
                    log(f"{s.name} {mode}: {key} failed in round {rnd + 1}: {res['skipped'][key]}")
                    runs.pop(key)
            last_round = time.perf_counter() - t_round
            res["rounds"] = rnd + 1
            for key, run in runs.items():
                res["variants"][key] = self.summarize(s, mode, run["v"], run, runs.get("baseline"))
            log(f"{s.name} {mode}: round {rnd + 1}/{self.args.repeats} {last_round:.1f} s")
        res["seconds"] = time.perf_counter() - t_mode
        for key, run in runs.items():
            self.outputs[(s.name, mode, key)] = (run["timed"] or [run["first"]])[0]["x"]
        if mode == "eager" and "baseline" in res["variants"]:
            self.eager_base[s.name] = res["variants"]["baseline"]["median_run_s"]
        for key, run in runs.items():  # again, now that every output and the eager baseline are known
            res["variants"][key] = self.summarize(s, mode, run["v"], run, runs.get("baseline"))

    def summarize(self, s: Setup, mode: str, v: Variant, run: dict, base: Optional[dict]) -> dict:
        timed = run["timed"]
        rows = timed or [run["first"]]
        first = run["first"]
        med = _median([r["seconds"] for r in rows])
        steps = first["steps"]
        full_calls, cached_calls = first["full_calls"], first["cached_calls"]
        per_call = lambda key, n: _median([r[key] / n for r in rows if r[key] is not None]) if n else None
        full_s, cached_s = per_call("full_s", full_calls), per_call("cached_s", cached_calls)
        out = dict(label=v.label, interval=v.interval, branch=v.branch, refresh_all=v.refresh_all,
                   timed_runs=len(timed), runs_s=[r["seconds"] for r in timed], median_run_s=med,
                   ms_per_step=1e3 * med / steps, first_run_s=first["wall_s"], first_graphs=run["first_graphs"],
                   first_call_s=run["first_call_s"], later_run_wall_s=_median([r["wall_s"] for r in timed]),
                   steps=steps, full_calls=full_calls, cached_calls=cached_calls, extra_calls=first["extra_calls"],
                   full_ms_per_call=None if full_s is None else 1e3 * full_s,
                   cached_ms_per_call=None if cached_s is None else 1e3 * cached_s,
                   core_unet_speedup=_median([r["core_speedup"] for r in rows]),
                   disabled=first["disabled"] or next((r["disabled"] for r in timed if r["disabled"]), None),
                   peak_gib=None if first["peak_b"] is None else max(r["peak_b"] for r in rows) / GIB,
                   peak_reserved_gib=None if first["reserved_b"] is None else max(r["reserved_b"] for r in rows) / GIB,
                   start_gib=None if first["start_b"] is None else first["start_b"] / GIB,
                   first_run_peak_gib=None if first["peak_b"] is None else first["peak_b"] / GIB,
                   finite=bool(all(torch.isfinite(r["x"]).all() for r in [first] + timed)),
                   repeatable=bool(all(torch.equal(first["x"], r["x"]) for r in timed)))
        base_med = None if base is None else _median([r["seconds"] for r in (base["timed"] or [base["first"]])])
        out["speedup"] = 1.0 if v.baseline else None if base_med is None else base_med / med
        eager = self.eager_base.get(s.name)
        out["speedup_vs_eager_baseline"] = None if eager is None else eager / med
        frac = s.fractions[v.branch]
        out["cached_fraction_flops"] = frac
        out["ceiling"] = None if v.baseline else speedup_from_counts(full_calls, cached_calls, frac)
        out["efficiency"] = None if out["speedup"] is None or out["ceiling"] is None or v.baseline \
            else out["speedup"] / out["ceiling"]
        if out["full_ms_per_call"] and out["cached_ms_per_call"]:
            out["cached_over_full_time"] = out["cached_ms_per_call"] / out["full_ms_per_call"]
        x = rows[0]["x"]
        ref = self.outputs.get((s.name, mode, "baseline"))
        out["vs_baseline"] = None if ref is None or v.baseline else _compare(x, ref)
        ref = self.outputs.get((s.name, "eager", v.key))
        out["vs_eager"] = None if ref is None or mode == "eager" else _compare(x, ref)
        ref = self.outputs.get((s.name, "compiled", v.key))
        out["vs_compiled"] = None if ref is None or mode != "graphs" else _compare(x, ref)
        return out
