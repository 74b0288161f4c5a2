"""bench/gpu: DeepCache end to end on a CUDA GPU, eager, compiled and as CUDA graphs.

    python3 -m bench.gpu                   # CUDA machine: writes bench/results/gpu.json, stops itself at --budget
    python3 -m bench.gpu --budget 540      # more time: compiled SDXL and the CUDA graphs of both models
    python3 -m bench.gpu --budget 540 --compile-branches 0   # compile branch 0 only (one full graph less)
    python3 -m bench.gpu --smoke           # CPU, tiny U-Nets, fp32, compile backend "eager" (the CI check)
    python3 -m bench.gpu --table bench/results/gpu.json   # print the tables of a results file, run nothing

Full-size SD1.5 (512 px: 64x64 latent, context 77x768) and SDXL (1024 px: 128x128 latent, context 77x2048,
y 2816) U-Nets of demo/unet.py with random weights (fan-in scaled, so outputs stay finite), fp16, batch 2
(classifier-free guidance: cond + uncond rows in one call). Each run is a 20-step Euler loop over a Karras
sigma schedule, every U-Net call through core.call_unet with a RunState, as the host adapters do.

Variants, per model and mode:
  baseline      the U-Net's own forward on every step (a RunState at interval 1: PASSTHROUGH calls)
  N=3 b=0 ...   DeepCache: refresh steps run the whole U-Net and store the deep feature (the input of output
                block L-1-b), cached steps run only the shallow branch b on it
  refresh b=0   DeepCache's full forward on every step (all calls FULL): must equal the baseline

Modes:
  eager         plain PyTorch
  compiled      torch.compile (mode default, dynamic=False): the plain forward for the baseline; for DeepCache
                two static graphs per branch, the whole U-Net returning the deep feature and the shallow branch
                consuming it. call_unet's bookkeeping (plain Python, torch.compiler.disable) stays outside them
  graphs        each graph of the compiled mode (of the eager mode with --modes eager graphs) captured once as
                a CUDA graph (torch.cuda.CUDAGraph) and replayed with its inputs copied in

Figures: ms per sampler step (median whole run over the steps, CUDA events), speed-up against the same mode's
baseline and against the eager baseline, the run's FLOP ceiling (core.cost.speedup_from_counts over the run's
full and cached calls with S(b) counted by block_costs on the meta device), efficiency = speed-up / ceiling,
peak memory (torch.cuda.max_memory_allocated, reset before every run), per-call full and cached times
(RunSummary.measured), the first run of every variant (warm-up, compilation or capture included) next to the
later ones, and each graph's compile or capture time apart. Runs are interleaved round by round.

Order and budget: eager SD1.5, eager SDXL, compiled SD1.5 (then its CUDA graphs), compiled SDXL (then its CUDA
graphs); the JSON is rewritten after each of these. Before each step the script estimates what it needs and
skips it (saying why) when --budget would be exceeded; a timer stops it at --budget in any case, keeping what
was measured.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from .common import RESULTS, command_line, machine, sibling

_core, _cost = sibling("core"), sibling("core.cost")
DeepCacheConfig, LdmOps, RunState, StepKind = _core.DeepCacheConfig, _core.LdmOps, _core.RunState, _core.StepKind
call_unet, open_call = _core.call_unet, sibling("core.call").open_call
describe_unet, shared_store, unet_forward = _core.describe_unet, _core.shared_store, _core.unet_forward
block_costs, branch_cost_fractions, speedup_from_counts = (
    _cost.block_costs, _cost.branch_cost_fractions, _cost.speedup_from_counts)
U = sibling("demo.unet")

DEFAULT_OUT = os.path.join(RESULTS, "gpu.json")
GIB = 2.0 ** 30

# name -> (architecture, latent side, label, eager phase: seconds it needs on a GPU)
MODELS = {
    "sd15": (U.SD15, 64, "SD1.5, 512 px (64x64 latent)", 25.0),
    "sdxl": (U.SDXL, 128, "SDXL, 1024 px (128x128 latent)", 50.0),
    "tiny-sd15": (U.TINY_SD15, 8, "tiny SD1.5-shaped U-Net (smoke)", 1.0),
    "tiny-sdxl": (U.TINY_SDXL, 8, "tiny SDXL-shaped U-Net (smoke)", 1.0),
}
MODES = ("eager", "compiled", "graphs")
# a full U-Net graph's first call (dynamo + backend), seconds per leaf module before one was measured
COMPILE_PRIOR = {"inductor": 0.12, "eager": 0.02}


class BudgetExceeded(BaseException):
    """--budget is spent (a BaseException, so that call_unet's fallback never swallows it)."""


# -- model ------------------------------------------------------------------------------------------
@torch.no_grad()
def fill_random_(module: torch.nn.Module, seed: int = 0) -> None:
    """bench.common.fill_random drawn on the parameters' own device (SDXL has 2.6e9 of them): fan-in scaled
    normal weights, unit norm weights, zero biases."""
    gens = {}
    for name, p in module.named_parameters():
        if p.ndim >= 2:
            g = gens.get(p.device)
            if g is None:
                g = gens[p.device] = torch.Generator(device=p.device).manual_seed(seed)
            p.normal_(0.0, 1.0 / math.sqrt(math.prod(p.shape[1:])), generator=g)
        elif name.endswith("weight"):
            p.fill_(1.0)
        else:
            p.zero_()


def build_unet(arch: dict, device: torch.device, dtype: torch.dtype) -> U.UNetModel:
    with torch.device("meta"):
        unet = U.UNetModel(**arch)
    unet = unet.to_empty(device=device).to(dtype)
    fill_random_(unet)
    return unet.eval().requires_grad_(False)


def leaf_modules(unet) -> int:
    return sum(1 for m in unet.modules() if next(m.children(), None) is None)


def sd_schedule(steps: int, rho: float = 7.0):
    """Karras sigmas over SD's training range (scaled-linear betas, 1000 steps) and their timesteps."""
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    alphas = np.cumprod(1.0 - betas)
    train = np.sqrt((1.0 - alphas) / alphas)
    lo, hi = train[0] ** (1 / rho), train[-1] ** (1 / rho)
    sigmas = (hi + np.linspace(0.0, 1.0, steps) * (lo - hi)) ** rho
    ts = np.interp(np.log(sigmas), np.log(train), np.arange(1000, dtype=np.float64))
    return [float(s) for s in sigmas] + [0.0], [float(t) for t in ts]


@dataclass
class Setup:
    """One model at one size: the U-Net, its inputs and its FLOP fractions."""
    name: str
    label: str
    unet: U.UNetModel
    depth: int
    leaves: int
    noise: torch.Tensor
    ctx: torch.Tensor
    y: Optional[torch.Tensor]
    sigmas: list
    ts: list            # one (2,) tensor per step, each its own allocation
    guidance: float
    fractions: list     # S(b): FLOPs of a cached call / a full call, per branch
    full_gflop: float   # one full call (batch 2)
    params_m: float
    build_s: float


def model_inputs(arch: dict, side: int, device, dtype, gen_seed: int = 1):
    gen = torch.Generator().manual_seed(gen_seed)
    noise = torch.randn(1, arch.get("in_channels", 4), side, side, generator=gen)
    ctx = torch.randn(2, 77, arch["context_dim"], generator=gen)
    y = torch.randn(2, arch["adm_in_channels"], generator=gen) if arch.get("num_classes") == "sequential" else None
    cast = lambda v: None if v is None else v.to(device=device, dtype=dtype)
    return cast(noise), cast(ctx), cast(y)


_FLOPS: dict = {}


def flop_fractions(arch: dict, side: int, ctx_len: int = 77):
    """(S(b) per branch, GFLOP of one full call) at batch 2, counted on the meta device (no compute)."""
    key = (repr(sorted(arch.items())), side, ctx_len)
    if key not in _FLOPS:
        _FLOPS[key] = _count_flops(arch, side, ctx_len)
    return _FLOPS[key]


def _count_flops(arch: dict, side: int, ctx_len: int):
    with torch.device("meta"):
        unet = U.UNetModel(**arch)
        x = torch.empty(2, arch.get("in_channels", 4), side, side)
        t = torch.empty(2)
        ctx = torch.empty(2, ctx_len, arch["context_dim"])
        y = torch.empty(2, arch["adm_in_channels"]) if arch.get("num_classes") == "sequential" else None
    depth = describe_unet(unet).depth
    costs = block_costs(lambda: LdmOps(unet, t, ctx, y), x, depth)
    return branch_cost_fractions(costs), costs.total / 1e9


def make_setup(name: str, steps: int, device, dtype, guidance: float) -> Setup:
    arch, side, label, _ = MODELS[name]
    t0 = time.perf_counter()
    unet = build_unet(arch, device, dtype)
    noise, ctx, y = model_inputs(arch, side, device, dtype)
    sigmas, ts = sd_schedule(steps)
    fractions, gflop = flop_fractions(arch, side)
    ts = [torch.full((2,), t, dtype=torch.float32, device=device) for t in ts]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return Setup(name, label, unet, describe_unet(unet).depth, leaf_modules(unet), noise, ctx, y, sigmas, ts,
                 guidance, fractions, gflop, sum(p.numel() for p in unet.parameters()) / 1e6,
                 time.perf_counter() - t0)


# -- the U-Net functions of one mode ----------------------------------------------------------------
def _full(unet, x, t, ctx, y, depth: int, branch: int):
    """The whole U-Net: (output, deep feature of branch b)."""
    return unet_forward(LdmOps(unet, t, ctx, y), x, depth, branch)


def _shallow(unet, x, t, ctx, y, deep, depth: int, branch: int):
    """The shallow branch b on a stored deep feature: the output."""
    ops = LdmOps(unet, t, ctx, y)
    return unet_forward(ops, x, depth, branch, deep=deep)[0]


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _dynamo_counts():
    try:
        from torch._dynamo.utils import counters
        return counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())
    except Exception:  # private counters: absent in some torch version
        return None, None


class FirstCallTimed:
    """A compiled function whose first call (compilation + one run) is timed apart, with the graphs
    dynamo made and the graph breaks it hit on the way."""

    def __init__(self, name: str, fn: Callable, stats: dict, device):
        self.name, self.fn, self.stats, self.device = name, fn, stats, device
        self.done = False
        self.error = None

    def __call__(self, *args):
        if self.done:
            return self.fn(*args)
        if self.error is not None:
            raise RuntimeError(f"{self.name} did not compile: {self.error}")
        _sync(self.device)
        g0, b0 = _dynamo_counts()
        t0 = time.perf_counter()
        try:
            out = self.fn(*args)
            _sync(self.device)
        except Exception as e:
            self.error = f"{type(e).__name__}: {e}"[:500]
            self.stats[self.name] = dict(kind="compile", seconds=time.perf_counter() - t0, error=self.error)
            raise
        g1, b1 = _dynamo_counts()
        self.stats[self.name] = dict(kind="compile", seconds=time.perf_counter() - t0,
                                     graphs=None if g0 is None else g1 - g0,
                                     graph_breaks=None if b0 is None else b1 - b0)
        self.done = True
        return out


class Graphed:
    """fn as one CUDA graph: captured on the first call (after a warm-up on a side stream) with static
    copies of that call's inputs; every call copies its inputs in and replays. The outputs are the graph's
    own buffers, overwritten by the next replay (the sampler and RunCache.write copy them at once)."""

    def __init__(self, name: str, fn: Callable, stats: dict):
        self.name, self.fn, self.stats = name, fn, stats
        self.graph = self.static = self.out = None

    def __call__(self, *args):
        if self.graph is None:
            self._capture(args)
        for dst, src in zip(self.static, args):
            dst.copy_(src)
        self.graph.replay()
        return self.out

    def _capture(self, args):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        self.static = [a.clone() for a in args]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self.fn(*self.static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.out = self.fn(*self.static)
        torch.cuda.synchronize()
        self.graph = graph
        self.stats[self.name] = dict(kind="capture", seconds=time.perf_counter() - t0)


class Forwards:
    """The U-Net functions of one model in one mode, made on first use, by name:
    "plain" (x, t) -> out; "full-b<b>" (x, t) -> (out, deep); "shallow-b<b>" (x, t, deep) -> out."""

    def __init__(self, s: Setup, mode: str, device, backend: str = "inductor", base: Optional["Forwards"] = None):
        self.s, self.mode, self.device, self.backend, self.base = s, mode, device, backend, base
        self.fns: dict = {}
        self.stats: dict = {}  # name -> first call (compile or capture)

    def get(self, name: str) -> Callable:
        fn = self.fns.get(name)
        if fn is None:
            fn = self.fns[name] = self._make(name)
        return fn

    def new(self, names) -> list:
        """Those of names whose first call is still to come."""
        return [n for n in names if n not in self.stats]

    def _make(self, name: str) -> Callable:
        s, u = self.s, self.s.unet
        kind, _, b = name.partition("-b")
        branch = int(b) if b else 0
        if self.mode == "graphs":
            return Graphed(name, self.base.get(name), self.stats)
        if self.mode == "eager":
            if kind == "plain":
                return lambda x, t: u(x, t, s.ctx, s.y)
            if kind == "full":
                return lambda x, t: _full(u, x, t, s.ctx, s.y, s.depth, branch)
            return lambda x, t, deep: _shallow(u, x, t, s.ctx, s.y, deep, s.depth, branch)
        compile_ = lambda fn: torch.compile(fn, backend=self.backend, dynamic=False)
        if kind == "plain":
            c = compile_(u)
            fn = lambda x, t: c(x, t, s.ctx, s.y)
        elif kind == "full":
            c = compile_(_full)
            fn = lambda x, t: c(u, x, t, s.ctx, s.y, s.depth, branch)
        else:
            c = compile_(_shallow)
            fn = lambda x, t, deep: c(u, x, t, s.ctx, s.y, deep, s.depth, branch)
        return FirstCallTimed(name, fn, self.stats, self.device)


# -- variants and runs ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    key: str
    interval: int = 1          # 1 and not refresh_all: the baseline
    branch: int = 0
    refresh_all: bool = False  # DeepCache's full forward on every step

    @property
    def baseline(self) -> bool:
        return self.interval == 1 and not self.refresh_all

    @property
    def label(self) -> str:
        if self.baseline:
            return "baseline"
        if self.refresh_all:
            return f"refresh every step b={self.branch}"
        return f"DeepCache N={self.interval} b={self.branch}"

    @property
    def graphs(self) -> tuple:
        if self.baseline:
            return ("plain",)
        if self.refresh_all:
            return (f"full-b{self.branch}",)
        return (f"full-b{self.branch}", f"shallow-b{self.branch}")


def make_variants(intervals, branches) -> list:
    out = [Variant("baseline")]
    for i, b in enumerate(branches):
        out += [Variant(f"n{n}-b{b}", n, b) for n in intervals]
        if i == 0:  # needs no graph of its own: right after the first branch's variants
            out.append(Variant(f"refresh-b{b}", 1, b, refresh_all=True))
    return out


def sample(s: Setup, fw: Forwards, v: Variant, device) -> dict:
    """One sampling run of variant v; its timings, calls, peak memory and final latent (on the CPU)."""
    config = DeepCacheConfig(interval=2 if v.refresh_all else v.interval, branch=v.branch)
    config.check_branch(s.depth)
    run = RunState(config, s.sigmas, s.depth, shared_store(s.unet).open_run())
    if v.refresh_all:  # no public setting for it: interval 1 means "off" (PASSTHROUGH)
        run.plan = [StepKind.REFRESH] * len(run.plan)
    shape = tuple(s.noise.shape)
    keys = [("cond", shape), ("uncond", shape)]
    cuda = device.type == "cuda"
    _sync(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        mem0 = torch.cuda.memory_allocated(device)
        ev0, ev1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    wall0 = time.perf_counter()
    if cuda:
        ev0.record()
    try:
        x = s.noise * math.sqrt(1.0 + s.sigmas[0] ** 2)
        for i in range(len(s.sigmas) - 1):
            sigma, sigma_next = s.sigmas[i], s.sigmas[i + 1]
            run.begin_evaluation()
            xin = x * (1.0 / math.sqrt(sigma ** 2 + 1.0))
            both, t = torch.cat([xin, xin]), s.ts[i]

            def forward(call, both=both, t=t):
                if call.deep is None:
                    return fw.get(f"full-b{call.branch}")(both, t)
                return fw.get(f"shallow-b{call.branch}")(both, t, call.deep), None

            out = call_unet(lambda: open_call(run, keys, both), lambda: fw.get("plain")(both, t), forward,
                            passthrough=(BudgetExceeded,))
            cond, uncond = out.chunk(2)
            x = x + (uncond + s.guidance * (cond - uncond)) * (sigma_next - sigma)
            run.on_step_end(i)
        if cuda:
            ev1.record()
    finally:
        summary = run.close()
    _sync(device)
    wall = time.perf_counter() - wall0
    m = summary.measured
    r = dict(seconds=ev0.elapsed_time(ev1) / 1e3 if cuda else wall, wall_s=wall, steps=len(s.sigmas) - 1,
             full_calls=summary.full_calls, cached_calls=summary.cached_calls, extra_calls=summary.extra_calls,
             full_s=m.full_seconds if m else None, cached_s=m.cached_seconds if m else None,
             core_speedup=m.speedup if m else None, disabled=summary.disabled_reason,
             peak_b=torch.cuda.max_memory_allocated(device) if cuda else None,
             reserved_b=torch.cuda.max_memory_reserved(device) if cuda else None,
             start_b=mem0 if cuda else None)
    r["x"] = x.detach().float().cpu()
    return r


def _compare(a: torch.Tensor, b: torch.Tensor) -> dict:
    d = (a - b).abs()
    return dict(equal=bool(torch.equal(a, b)), max_abs=float(d.max()),
                rel_l2=float(d.norm() / b.norm().clamp(min=1e-30)))


def _median(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


# -- the bench --------------------------------------------------------------------------------------
class Bench:
    def __init__(self, args, device, dtype, log):
        self.args, self.device, self.dtype, self.log = args, device, dtype, log
        self.t0 = time.perf_counter()
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
        out = dict(label=v.label, interval=v.interval, branch=v.branch, refresh_all=v.refresh_all,
                   timed_runs=len(timed), runs_s=[r["seconds"] for r in timed], median_run_s=med,
                   ms_per_step=1e3 * med / steps, first_run_s=first["wall_s"], first_graphs=run["first_graphs"],
                   first_call_s=run["first_call_s"], later_run_wall_s=_median([r["wall_s"] for r in timed]),
                   steps=steps, full_calls=full_calls, cached_calls=cached_calls, extra_calls=first["extra_calls"],
                   full_ms_per_call=None if per_call("full_s", full_calls) is None
                   else 1e3 * per_call("full_s", full_calls),
                   cached_ms_per_call=None if per_call("cached_s", cached_calls) is None
                   else 1e3 * per_call("cached_s", cached_calls),
                   core_unet_speedup=_median([r["core_speedup"] for r in rows]),
                   disabled=first["disabled"] or next((r["disabled"] for r in timed if r["disabled"]), None),
                   peak_gib=None if first["peak_b"] is None else max(r["peak_b"] for r in rows) / GIB,
                   peak_reserved_gib=None if first["reserved_b"] is None else max(r["reserved_b"] for r in rows) / GIB,
                   start_gib=None if first["start_b"] is None else first["start_b"] / GIB,
                   first_run_peak_gib=None if first["peak_b"] is None else first["peak_b"] / GIB,
                   finite=bool(all(torch.isfinite(r["x"]).all() for r in [first] + timed)),
                   repeatable=bool(all(torch.equal(first["x"], r["x"]) for r in timed)))
        base_med = None if base is None else _median([r["seconds"] for r in (base["timed"] or [base["first"]])])
        out["speedup"] = None if base_med is None or v.baseline else base_med / med
        if v.baseline:
            out["speedup"] = 1.0
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


# -- tables -----------------------------------------------------------------------------------------
def _f(v, fmt, prefix=""):
    return "–" if v is None else prefix + format(v, fmt)


def table(results: dict) -> str:
    lines = ["| model | mode | variant | ms/step | U-Net ms/call full / cached | speed-up | vs eager baseline "
             "| FLOP ceiling | efficiency | peak GiB |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in results.get("models", {}).items():
        for mode, r in m.get("modes", {}).items():
            for key, v in r.get("variants", {}).items():
                label = v["label"] + (" (DeepCache off)" if v.get("disabled") else "")
                calls = _f(v["full_ms_per_call"], ".1f") + " / " + _f(v["cached_ms_per_call"], ".1f")
                lines.append(f"| {m['short']} | {mode} | {label} | {_f(v['ms_per_step'], '.1f')} | {calls} | "
                             f"{_f(v['speedup'], '.2f', '×')} | {_f(v['speedup_vs_eager_baseline'], '.2f', '×')} | "
                             f"{_f(v['ceiling'], '.2f', '×')} | {_f(v['efficiency'], '.2f')} | "
                             f"{_f(v['peak_gib'], '.2f')} |")
    return "\n".join(lines)


def first_run_table(results: dict) -> str:
    lines = ["| model | mode | variant | first run s | later runs s | first calls (compile / capture) |",
             "|---|---|---|---:|---:|---|"]
    for name, m in results.get("models", {}).items():
        for mode, r in m.get("modes", {}).items():
            stats = r.get("first_calls", {})
            for key, v in r.get("variants", {}).items():
                calls = ", ".join(f"{g} {stats[g]['seconds']:.1f} s" for g in v["first_graphs"] if g in stats)
                lines.append(f"| {m['short']} | {mode} | {v['label']} | {v['first_run_s']:.2f} | "
                             f"{_f(v['later_run_wall_s'], '.2f')} | {calls or '–'} |")
    return "\n".join(lines)


def first_deepcache_run(results: dict) -> Optional[dict]:
    """The process's first DeepCache run (the first model's first mode: eager unless --modes says otherwise)
    and, per mode, the first DeepCache run of the first model, with the later runs of the same variant."""
    out = {}
    for name, m in results.get("models", {}).items():
        for mode, r in m.get("modes", {}).items():
            v = next((v for v in r.get("variants", {}).values() if v["interval"] > 1), None)
            if v is not None and mode not in out:
                out[mode] = dict(model=name, variant=v["label"], first_run_s=v["first_run_s"],
                                 later_run_s=v["later_run_wall_s"], first_calls_s=v["first_call_s"],
                                 first_graphs=v["first_graphs"])
    if not out:
        return None
    return dict(process=next(iter(out.values())), per_mode=out)


# -- machine and output -----------------------------------------------------------------------------
def gpu_machine(device) -> dict:
    m = machine()
    m.update(device=str(device), cuda=torch.version.cuda,
             cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
    try:
        import triton
        m["triton"] = triton.__version__
    except Exception:
        m["triton"] = None
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        m.update(gpu=p.name, gpu_memory_gib=p.total_memory / GIB, sm_count=p.multi_processor_count,
                 capability=f"{p.major}.{p.minor}")
        try:
            q = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,power.limit",
                                "--format=csv,noheader"], capture_output=True, text=True, timeout=15)
            m["nvidia_smi"] = q.stdout.strip() or None
        except Exception:
            m["nvidia_smi"] = None
    return m


def write(path: str, results: dict) -> None:
    results["table_md"] = table(results)
    results["first_run_table_md"] = first_run_table(results)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1, default=str, allow_nan=False)
    os.replace(tmp, path)


def _clean(obj):
    """NaN/inf (never expected) as strings, so the JSON stays valid and says so."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(obj)
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


class _Alarm:
    """SIGALRM at the budget and every 5 s after it until disarmed (should something turn one BudgetExceeded
    into another error): raises BudgetExceeded. Main thread only, where signals are delivered."""

    def __init__(self, seconds: float):
        self.armed = (seconds > 0 and hasattr(signal, "setitimer")
                      and threading.current_thread() is threading.main_thread())
        if self.armed:
            self.old = signal.signal(signal.SIGALRM, self._fire)
            signal.setitimer(signal.ITIMER_REAL, seconds, 5.0)

    def _fire(self, signum, frame):
        if self.armed:
            raise BudgetExceeded()

    def disarm(self):
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.old)
            self.armed = False


# -- main -------------------------------------------------------------------------------------------
def parse(argv):
    ap = argparse.ArgumentParser(prog="python3 -m bench.gpu", description=__doc__,
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

    bench = Bench(args, device, dtype, log)
    bench.t0 = start
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
    alarm = _Alarm(args.budget)
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
                run_model_phase(bench, results, name, want)
                write(args.out, _clean(results))
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
    results = _clean(results)
    write(args.out, results)
    print("\n" + results["table_md"] + "\n\n" + results["first_run_table_md"])
    if results["skipped"]:
        print("\nskipped: " + "; ".join(results["skipped"]))
    log(f"wrote {args.out}")
    return results


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
            need = 3.0 * len({g for v in vs for g in v.graphs}) + 2 * len(vs) * last * (args.repeats + 1)
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
        write(args.out, _clean(results))

if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    sys.stdout.flush()
    sys.stderr.flush()
    # inductor's compile workers may still run after a budget stop: end without waiting for them
    os._exit(0)
