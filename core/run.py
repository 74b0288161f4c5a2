"""The state of one sampling run: its plan, which step each model call belongs to,
which calls may read the cache, and what happened (stats).

Created when a run starts and dropped when it ends, so no image ever starts from
another run's features.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Hashable, Optional, Sequence

from .config import DeepCacheConfig
from .cost import speedup_from_counts
from .schedule import StepKind, plan_run
from .store import RunCache


class Mode(str, enum.Enum):
    PASSTHROUGH = "passthrough"  # the host's own forward, nothing stored
    FULL = "full"                # our full forward, deep feature stored
    CACHED = "cached"            # shallow branch on the stored deep feature


@dataclass
class RunSummary:
    steps: int
    full_steps: int
    cached_steps: int
    full_evals: int
    cached_evals: int
    estimated_speedup: Optional[float]
    disabled_reason: Optional[str] = None

    def text(self) -> str:
        s = f"DeepCache: {self.full_steps} full / {self.cached_steps} cached steps"
        if self.estimated_speedup is not None:
            s += f", ~x{self.estimated_speedup:.2f} U-Net speed-up"
        if self.disabled_reason:
            s += f" (off: {self.disabled_reason})"
        return s


class RunState:
    """Step tracking: a step is a sampler step, not a model call.

    The host reports its sampler's step callback (on_callback(i)). Samplers call it
    once per step, after the step's evaluations, except the mid-step ones (Heun,
    DPM2, DPM++ SDE, DPM++ 2S a, ...: mid_step_callback=True), which call it after
    the first evaluation of step i, so the next evaluation is still step i.
    Between callbacks the sigma of a call gives the step too: a call at a schedule
    sigma s_k is step k's first, except in mid-step samplers whose last stage is at
    s_{i+1} (Heun), where only the callbacks can tell.
    """

    def __init__(self, config: DeepCacheConfig, sigmas: Sequence[float], depth: int, cache: RunCache,
                 start_sigma: float = math.inf, end_sigma: float = 0.0,
                 cost_fraction: Optional[float] = None, mid_step_callback: bool = False):
        self.config = config
        self.depth = depth
        self.cache = cache
        self.sigmas = [float(s) for s in sigmas]
        self.plan = plan_run(config, self.sigmas, start_sigma, end_sigma)
        self.cost_fraction = cost_fraction
        self.cost_probed = cost_fraction is not None  # adapters measure it once, on the first full call
        self.mid_step_callback = mid_step_callback
        self.step = 0
        self._last_callback = -1
        self._evals_since_callback = 0
        self.disabled_reason: Optional[str] = None
        self._seen: set = set()
        self._last_sigma: Optional[float] = None
        self._step_modes: dict[int, set] = {}
        self.full_evals = 0
        self.cached_evals = 0

    # -- host events -------------------------------------------------------
    def begin_evaluation(self) -> None:
        """One sampler evaluation of the model (cond and uncond together) starts."""
        self._seen.clear()
        self._last_sigma = None
        if self._last_callback >= 0:
            same_step = self.mid_step_callback and self._evals_since_callback == 0
            self.step = max(self.step, self._last_callback + (0 if same_step else 1))
        self._evals_since_callback += 1

    def on_callback(self, step: int) -> None:
        """The sampler's step callback reported step `step`."""
        self._last_callback = max(self._last_callback, int(step))
        self._evals_since_callback = 0

    def on_step_end(self, step: int) -> None:
        """Every evaluation of step `step` is done (hosts that know it exactly)."""
        self.step = max(self.step, int(step) + 1)

    def disable(self, reason: str) -> None:
        self.disabled_reason = reason

    # -- decisions ---------------------------------------------------------
    def step_for(self, sigma: float) -> int:
        tol = 1e-5 * max(abs(sigma), 1e-8)
        inner = self.sigmas[1:-1]
        if self.mid_step_callback:  # s_{i+1} may still be step i
            from_sigma = sum(1 for s in inner if s > sigma + tol)
        else:
            from_sigma = sum(1 for s in inner if s >= sigma - tol)
        return max(self.step, from_sigma)

    def decide(self, sigma: float, keys: Sequence[Hashable]) -> Mode:
        """The mode of one model call whose rows belong to keys (one per chunk)."""
        if self._last_sigma is not None and sigma != self._last_sigma:
            self.begin_evaluation()  # a new evaluation even if the host did not say so
        self._last_sigma = sigma
        repeated = any(k in self._seen for k in keys)
        self._seen.update(keys)
        if self.disabled_reason is not None or not self.plan:
            return Mode.PASSTHROUGH
        step = self.step_for(sigma)
        # past the plan (adaptive samplers count their own steps): nothing to reuse safely
        kind = self.plan[step] if step < len(self.plan) else StepKind.OFF
        if repeated or kind is StepKind.OFF:
            # a second call for the same conditioning in one evaluation (PAG, SAG,
            # SLG perturbed passes) must neither read nor overwrite the cache
            mode = Mode.PASSTHROUGH
        elif kind is StepKind.CACHED and self.cache.has(keys):
            mode = Mode.CACHED
        else:
            mode = Mode.FULL
        self._step_modes.setdefault(step, set()).add(mode)
        if mode is Mode.CACHED:
            self.cached_evals += 1
        else:
            self.full_evals += 1
        return mode

    # -- report ------------------------------------------------------------
    def summary(self) -> RunSummary:
        cached = sum(1 for modes in self._step_modes.values() if modes == {Mode.CACHED})
        steps = len(self._step_modes)
        speedup = None
        if self.cost_fraction is not None:
            speedup = speedup_from_counts(self.full_evals, self.cached_evals, self.cost_fraction)
        return RunSummary(steps=steps, full_steps=steps - cached, cached_steps=cached,
                          full_evals=self.full_evals, cached_evals=self.cached_evals,
                          estimated_speedup=speedup, disabled_reason=self.disabled_reason)

    def close(self) -> RunSummary:
        summary = self.summary()
        self.cache.close()
        return summary
