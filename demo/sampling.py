"""A sampler loop over the core, the way the host adapters drive it.

Per run: a RunCache from the U-Net's shared store and a RunState. Per sampler
evaluation: begin_evaluation(), then one model call whose row chunks carry keys
("cond"/"uncond", shape), sent through core.call_unet like every host adapter's:
PASSTHROUGH (the U-Net's own forward), FULL (unet_forward storing the deep feature)
or CACHED (the shallow branch on the stored feature). After each step: on_step_end(i).

Used by the demo (python3 -m demo) and by bench/quality.py and bench/speed.py.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Hashable, Optional, Sequence

import torch

from ._repo import sibling

_core, _cost = sibling("core"), sibling("core.cost")
DeepCacheConfig, Mode, RunState, StepKind = _core.DeepCacheConfig, _core.Mode, _core.RunState, _core.StepKind
describe_unet, shared_store, unet_forward = _core.describe_unet, _core.shared_store, _core.unet_forward
call_unet, LdmOps, open_call = _core.call_unet, _core.LdmOps, _core.open_call
block_costs, branch_cost_fractions, speedup_from_counts = (
    _cost.block_costs, _cost.branch_cost_fractions, _cost.speedup_from_counts)


class DeepCacheCall:
    """One model call through the core: the same decision path as a host adapter.

    run=None calls the U-Net's own forward (the baseline, no DeepCache code at all)."""

    def __init__(self, unet, run: Optional[RunState]):
        self.unet = unet
        self.run = run
        self.modes: list[Mode] = []

    def __call__(self, x, timesteps, keys: Sequence[Hashable], context=None, y=None):
        def host():
            return self.unet(x, timesteps, context, y)

        if self.run is None:
            return host()

        def forward(call):
            ops = LdmOps(self.unet, timesteps, context, y)
            return unet_forward(ops, x, call.depth, call.branch, deep=call.deep)

        return call_unet(lambda: self._opened(open_call(self.run, keys, x)), host, forward)

    def _opened(self, call):
        self.modes.append(call.mode)
        return call


def open_run(unet, config: DeepCacheConfig, sigmas) -> RunState:
    depth = describe_unet(unet).depth
    config.check_branch(depth)
    cache = shared_store(unet).open_run()
    return RunState(config, [float(s) for s in sigmas], depth, cache)


@dataclass
class SampleResult:
    images: torch.Tensor
    seconds: float
    summary: Optional[object] = None  # core.run.RunSummary, None for the baseline
    flop_speedup: Optional[float] = None  # the run's calls weighted by their FLOP cost (given a cost fraction)
    plan: list = field(default_factory=list)  # StepKind per step
    modes: list = field(default_factory=list)  # Mode per model call


def cfg_eps(call: DeepCacheCall, x_in, t, labels, null_labels, guidance: float):
    """Epsilon of one sampler evaluation; with guidance != 1, cond and uncond rows
    go in one batched call with one cache key each (the row chunks)."""
    shape = tuple(x_in.shape)
    if guidance == 1.0:
        return call(x_in, t, [("cond", shape)], None, labels)
    both = call(torch.cat([x_in, x_in]), torch.cat([t, t]),
                [("cond", shape), ("uncond", shape)], None, torch.cat([labels, null_labels]))
    cond, uncond = both.chunk(2)
    return uncond + guidance * (cond - uncond)


@torch.no_grad()
def sample_euler(unet, noise: torch.Tensor, labels: torch.Tensor, sigmas: torch.Tensor, *,
                 sigma_to_t: Callable, config: Optional[DeepCacheConfig] = None, guidance: float = 1.0,
                 null_label: Optional[int] = None, cost_fraction: Optional[float] = None) -> SampleResult:
    """Deterministic Euler over the sigmas (k-diffusion convention, epsilon model);
    over a model's own discrete sigmas this is DDIM with eta = 0.

    config=None: the baseline (the U-Net's own forward every step)."""
    t0 = time.perf_counter()
    run = open_run(unet, config, sigmas) if config is not None else None
    call = DeepCacheCall(unet, run)
    null = torch.full_like(labels, null_label if null_label is not None else 0)
    try:
        x = noise * math.sqrt(1.0 + float(sigmas[0]) ** 2)
        for i in range(len(sigmas) - 1):
            sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
            if run is not None:
                run.begin_evaluation()
            c_in = 1.0 / math.sqrt(sigma ** 2 + 1.0)
            t = sigma_to_t(torch.tensor([sigma])).expand(x.shape[0]).to(x.dtype)
            eps = cfg_eps(call, x * c_in, t, labels, null, guidance)
            x = x + eps * (sigma_next - sigma)  # denoised = x - sigma*eps; d = eps
            if run is not None:
                run.on_step_end(i)
        summary = plan = None
        if run is not None:
            plan = list(run.plan)
    finally:
        if run is not None:
            summary = run.close()
    flop = None
    if summary is not None and cost_fraction is not None:
        flop = speedup_from_counts(summary.full_calls, summary.cached_calls, cost_fraction)
    return SampleResult(images=x, seconds=time.perf_counter() - t0, summary=summary, flop_speedup=flop,
                        plan=plan or [], modes=list(call.modes))


def cost_fractions(unet, x: torch.Tensor, timesteps: torch.Tensor, context=None, y=None) -> list[float]:
    """S(b) = cached-step FLOPs / full-step FLOPs for every branch b (fake tensors, no compute)."""
    depth = describe_unet(unet).depth
    costs = block_costs(lambda: LdmOps(unet, timesteps, context, y), x, depth)
    return branch_cost_fractions(costs)


def psnr(images: torch.Tensor, reference: torch.Tensor, data_range: float = 2.0) -> float:
    """Mean per-image PSNR (dB) of images in [-1, 1] against the reference images."""
    a = images.float().clamp(-1, 1)
    b = reference.float().clamp(-1, 1)
    mse = (a - b).pow(2).flatten(1).mean(1).clamp(min=1e-10)
    return float((10 * torch.log10(data_range ** 2 / mse)).mean())


def plan_string(plan: Sequence[StepKind]) -> str:
    """'F..F..' for a plan: F refresh, . cached, - off."""
    return "".join({StepKind.REFRESH: "F", StepKind.CACHED: ".", StepKind.OFF: "-"}[k] for k in plan)
