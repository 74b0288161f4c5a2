"""The state of one sampling run: its plan, which step each U-Net call belongs to,
which calls may read the cache, and what the run did (counts and measured time).

Created when a run starts and dropped when it ends, so no image ever starts from
another run's features. Everything here is plain Python on host values: nothing
reads a device tensor while the sampler runs.
"""
from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass
from typing import Hashable, Optional, Sequence

from .config import DeepCacheConfig
from .schedule import StepKind, plan_run
from .stats import CallTimes, Measured
from .store import RunCache

log = logging.getLogger("DeepCache")


class Mode(str, enum.Enum):
    PASSTHROUGH = "passthrough"  # the host's own forward, nothing stored
    FULL = "full"                # our full forward, deep feature stored
    CACHED = "cached"            # shallow branch on the stored deep feature


@dataclass
class RunSummary:
    steps: int
    full_steps: int
    cached_steps: int
    full_calls: int    # U-Net calls that ran in full (refresh, off steps, fallbacks)
    cached_calls: int
    extra_calls: int   # second calls of a conditioning in one evaluation (PAG, SAG): host forward
    measured: Optional[Measured] = None
    disabled_reason: Optional[str] = None

    @property
    def speedup(self) -> Optional[float]:
        return None if self.measured is None else self.measured.speedup

    def text(self) -> str:
        s = f"DeepCache: {self.full_steps} full / {self.cached_steps} cached steps"
        if self.extra_calls:
            s += f" + {self.extra_calls} extra passes in full"
        if self.speedup is not None:
            s += f", U-Net x{self.speedup:.2f} measured ({self.measured.saved_seconds:.1f} s saved)"
        if self.disabled_reason:
            s += f" (off: {self.disabled_reason})"
        return s


def _last_refresh(plan: Sequence[StepKind]) -> list[int]:
    """For every step, the latest refresh step at or before it (-1: none)."""
    out, last = [], -1
    for i, kind in enumerate(plan):
        if kind is StepKind.REFRESH:
            last = i
        out.append(last)
    return out


class RunState:
    """Step tracking: a step is a sampler step, not a U-Net call, and it comes from the host.

    The host marks each sampler evaluation (begin_evaluation) and reports its sampler's
    step callback (on_callback(i)). Samplers call back once per step after the step's
    evaluations, except the mid-step ones (Heun, DPM2, DPM++ SDE, DPM++ 2S a, ...:
    mid_step_callback=True), which call back after the first evaluation of step i, so
    the next evaluation still belongs to step i. Hosts that know when a step ends call
    on_step_end(i) instead.
    """

    def __init__(self, config: DeepCacheConfig, sigmas: Sequence[float], depth: int, cache: RunCache,
                 start_sigma: float = math.inf, end_sigma: float = 0.0, mid_step_callback: bool = False):
        self.config = config
        self.depth = depth
        self.cache = cache
        self.plan = plan_run(config, [float(s) for s in sigmas], start_sigma, end_sigma)
        self._refreshed_at = _last_refresh(self.plan)
        self.mid_step_callback = mid_step_callback
        self.step = 0
        self._last_callback = -1
        self._evals_since_callback = 0
        self.disabled_reason: Optional[str] = None
        self._seen: set = set()
        self._step_modes: dict[int, set] = {}
        self.full_calls = self.cached_calls = self.extra_calls = 0
        self.times = CallTimes()
        self._summary: Optional[RunSummary] = None

    # -- host events -------------------------------------------------------
    def begin_evaluation(self) -> None:
        """One sampler evaluation of the model (cond and uncond together) starts."""
        self._seen.clear()
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
        if self.disabled_reason is None:
            self.disabled_reason = reason

    @property
    def active(self) -> bool:
        return self.disabled_reason is None and StepKind.CACHED in self.plan

    # -- decisions ---------------------------------------------------------
    def decide(self, keys: Sequence[Hashable]) -> Mode:
        """The mode of one U-Net call whose row chunks belong to keys (one per chunk)."""
        repeated = any(k in self._seen for k in keys)
        self._seen.update(keys)
        step = self.step
        kind = self.plan[step] if step < len(self.plan) else StepKind.OFF
        if repeated:
            # a second call for the same conditioning in one evaluation (PAG, SAG,
            # SLG perturbed passes) must neither read nor overwrite the cache
            self.extra_calls += 1
            return Mode.PASSTHROUGH
        if self.disabled_reason is not None or kind is StepKind.OFF:
            # past the plan too (adaptive samplers count their own steps)
            mode = Mode.PASSTHROUGH
        elif kind is StepKind.CACHED and self.cache.has(keys, since=self._refreshed_at[step]):
            mode = Mode.CACHED
        else:  # a refresh step, or a cached step whose refresh never ran for these keys
            mode = Mode.FULL
        self._step_modes.setdefault(step, set()).add(mode)
        if mode is Mode.CACHED:
            self.cached_calls += 1
        else:
            self.full_calls += 1
        return mode

    # -- report ------------------------------------------------------------
    def summary(self, measure: bool = False) -> RunSummary:
        cached = sum(1 for modes in self._step_modes.values() if modes == {Mode.CACHED})
        steps = len(self._step_modes)
        return RunSummary(steps=steps, full_steps=steps - cached, cached_steps=cached,
                          full_calls=self.full_calls, cached_calls=self.cached_calls,
                          extra_calls=self.extra_calls, measured=self._measure() if measure else None,
                          disabled_reason=self.disabled_reason)

    def _measure(self) -> Optional[Measured]:
        try:
            return self.times.measure()
        except Exception as e:  # the timing is a report: it never fails the user's run
            log.warning("DeepCache: could not read this run's timings (%s: %s)", type(e).__name__, e)
            return None

    def close(self) -> RunSummary:
        """End of the run: read the timings once, free the features. Idempotent."""
        if self._summary is None:
            self._summary = self.summary(measure=True)
            self.cache.close()
        return self._summary
