"""The variants (baseline, DeepCache N/b, refresh on every step) and one sampling run of a variant: a Euler loop
with every U-Net call through core.call_unet."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from ..common import sibling
from .budget import BudgetExceeded
from .forwards import Forwards, sync
from .model import Setup

_core = sibling("core")
DeepCacheConfig, RunState, StepKind = _core.DeepCacheConfig, _core.RunState, _core.StepKind
call_unet, open_call, shared_store = _core.call_unet, _core.open_call, _core.shared_store


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
    sync(device)
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
    sync(device)
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
