"""One sampling run as A1111's and Forge's samplers drive it.

The sampler function (k-diffusion's, or DDIM/PLMS/UniPC's) is wrapped on the
sampler instance: its arguments give the run's schedule, its model argument
marks each evaluation (cond and uncond together) with its noise level, and its
callback tells which step ended. state.sampling_step is not used: it lags one
step behind the model calls.
"""
from __future__ import annotations

import functools
from typing import Callable, Hashable, Optional, Sequence

from ..core import RunState


class SamplerRun:
    def __init__(self, state: RunState, denoiser=None, label: str = "", host=None):
        self.state = state
        self.label = label
        self.host = host
        self.denoiser = denoiser          # the CFG denoiser the sampler calls
        self.sigma: Optional[float] = None
        self.expected_rows: Optional[int] = None  # rows of this evaluation's CFG batch, where known
        self._ordinals: dict = {}

    def begin_evaluation(self, sigma: float) -> None:
        # k-diffusion calls back after the first evaluation of step i in second-order
        # samplers (Heun, DPM2, DPM++ SDE, 2S a): RunState(mid_step_callback=...) knows
        self.state.begin_evaluation()
        self.sigma = sigma
        self.expected_rows = None
        self._ordinals.clear()

    def on_callback(self, i) -> None:
        self.state.on_callback(i)

    def keys(self, roles: Sequence[str], shape) -> Optional[list[Hashable]]:
        """Cache keys of one model call whose row chunks have these roles, in order.

        A key is (role, its ordinal in this evaluation, chunk shape), so each cond and
        uncond chunk, and each batch shape, has a cache of its own. None for calls
        beyond the evaluation's CFG batch (an extension's extra pass): those must
        neither read nor write the cache."""
        out = []
        for role in roles:
            n = self._ordinals.get(role, 0)
            self._ordinals[role] = n + 1
            if self.expected_rows is not None and n >= self.expected_rows:
                return None
            out.append((role, n, tuple(shape)))
        return out


def _first_value(sigma) -> float:
    try:
        return float(sigma.reshape(-1)[0])
    except AttributeError:
        return float(sigma)


class _Evaluations:
    """Stands in for the CFG denoiser the sampler calls; attributes pass through."""

    def __init__(self, model, run: SamplerRun):
        self._model = model
        self._run = run

    def __call__(self, x, sigma, *args, **kwargs):
        self._run.begin_evaluation(_first_value(sigma))
        return self._model(x, sigma, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._model, name)


def run_schedule(kwargs: dict) -> Optional[tuple[list[float], str]]:
    """(the run's noise levels, high to low, and their axis) from the sampler's arguments.

    k-diffusion samplers get 'sigmas'; DDIM/PLMS/UniPC get ascending 'timesteps' and
    call the model with them. None: no fixed schedule (DPM fast/adaptive)."""
    if kwargs.get("sigmas") is not None:
        return [float(s) for s in kwargs["sigmas"]], "sigma"
    if kwargs.get("timesteps") is not None:
        return sorted((float(t) for t in kwargs["timesteps"]), reverse=True), "timestep"
    return None


def wrap_sampler(sampler, open_run: Callable[[dict, object], Optional[SamplerRun]],
                 close_run: Callable[[SamplerRun], None]) -> None:
    """Wrap sampler.func for its next call; idempotent (Forge calls the hook twice)."""
    original = sampler.func
    if getattr(original, "_deepcache_original", None) is not None:
        return

    @functools.wraps(original)  # A1111 inspects the signature for 'sigmas', 'n', ...
    def func(model, x, *args, **kwargs):
        sampler.func = original  # one run per wrap
        run = open_run(kwargs, model)
        if run is None:
            return original(model, x, *args, **kwargs)
        host_callback = kwargs.get("callback")

        def callback(d):
            run.on_callback(d["i"])
            if host_callback is not None:
                return host_callback(d)

        kwargs["callback"] = callback
        try:
            return original(_Evaluations(model, run), x, *args, **kwargs)
        finally:
            close_run(run)

    func._deepcache_original = original
    sampler.func = func


def unwrap_sampler(sampler) -> None:
    original = getattr(getattr(sampler, "func", None), "_deepcache_original", None)
    if original is not None:
        sampler.func = original
