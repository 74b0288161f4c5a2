"""Which sampler steps of a run are refresh steps (paper Eq. 6 and Eq. 7)."""
from __future__ import annotations

import enum
import math
from typing import Sequence

import numpy as np

from .config import DeepCacheConfig


class StepKind(str, enum.Enum):
    OFF = "off"          # outside start/end: the host's own forward, nothing cached
    REFRESH = "refresh"  # whole U-Net, deep feature stored
    CACHED = "cached"    # shallow branch only, stored deep feature reused


def uniform_steps(num_steps: int, interval: int) -> list[int]:
    """Eq. 6: refresh at 0, N, 2N, ..."""
    return list(range(0, num_steps, interval))


def nonuniform_steps(num_steps: int, interval: int, center: float, power: float) -> list[int]:
    """Eq. 7: refresh steps denser around the center c (a fraction of the steps).

    l = linspace(-c^(1/p), (T-c)^(1/p), ceil(T/N)+1), steps = unique(int(sign(l)|l|^p + c)).
    The sign is kept (the official code takes the real part of a complex power,
    which gives different steps); steps >= T are dropped.
    """
    if num_steps <= 0:
        return []
    t = num_steps
    c = center * t
    k = math.ceil(t / interval)
    lin = np.linspace(-(c ** (1.0 / power)), (t - c) ** (1.0 / power), k + 1)
    vals = np.sign(lin) * np.abs(lin) ** power + c
    # the last point is T itself (the end of sampling), as in the official code
    steps = sorted({int(v) for v in vals[:-1] if 0 <= int(v) < t})
    if not steps or steps[0] != 0:
        steps = [0] + steps  # the first step always fills the cache
    return steps


def refresh_steps(config: DeepCacheConfig, num_steps: int) -> list[int]:
    """Refresh steps among num_steps consecutive cacheable steps."""
    if config.schedule == "uniform":
        return uniform_steps(num_steps, config.interval)
    return nonuniform_steps(num_steps, config.interval, config.center, config.power)


def plan_run(config: DeepCacheConfig, sigmas: Sequence[float],
             start_sigma: float = math.inf, end_sigma: float = 0.0) -> list[StepKind]:
    """The plan of one run: a StepKind per sampler step (len(sigmas) - 1 steps).

    A step is cacheable when end_sigma <= sigma <= start_sigma, the same test ComfyUI's
    ControlNet uses for its start/end percent, so the range means the same in txt2img
    and img2img.
    """
    num_steps = max(len(sigmas) - 1, 0)
    cacheable = [i for i in range(num_steps) if end_sigma <= float(sigmas[i]) <= start_sigma]
    return plan_steps(config, num_steps, cacheable)


def plan_steps(config: DeepCacheConfig, num_steps: int, cacheable: Sequence[int]) -> list[StepKind]:
    """The schedule starts at the first cacheable step, so every run (img2img,
    KSamplerAdvanced's later steps, a hires pass) starts with a refresh step."""
    plan = [StepKind.OFF] * num_steps
    if not config.enabled or not cacheable:
        return plan
    refresh = set(refresh_steps(config, len(cacheable)))
    for pos, step in enumerate(cacheable):
        plan[step] = StepKind.REFRESH if pos in refresh else StepKind.CACHED
    return plan
