"""One sampling run as A1111's and Forge's samplers drive it.

The sampler function (k-diffusion's, or DDIM/PLMS/UniPC's) is wrapped on the sampler
instance for its next call: its arguments give the run's schedule, each call of its model
argument is one evaluation (cond and uncond together), and its callback says which step
ended (state.sampling_step is not used: it lags one step behind the model calls).
Start/end percent are mapped to noise levels the way ComfyUI maps them, so a range covers
the same part of denoising in txt2img, img2img and the hires pass.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Hashable, Optional, Sequence

import torch

from ..core import DeepCacheConfig, RunState, shared_store


class SamplerRun:
    """A RunState and what the host adapters need around it for one sampler call."""

    def __init__(self, state: RunState, denoiser=None, label: str = "", host=None, steps_by_evaluation=False):
        self.state = state
        self.label = label
        self.host = host
        self.denoiser = denoiser          # the CFG denoiser the sampler calls
        # samplers whose every evaluation is a step of its own, called back a step late (A1111's UniPC)
        self.steps_by_evaluation = steps_by_evaluation
        self.evaluations = 0
        self.evaluating = False
        self.expected_rows: Optional[int] = None  # rows of this evaluation's CFG batch, where known
        self._ordinals: dict = {}

    def begin_evaluation(self) -> None:
        self.state.begin_evaluation()
        self.evaluating = True
        self.expected_rows = None
        self._ordinals.clear()

    def keys(self, roles: Sequence[str], shape) -> Optional[list[Hashable]]:
        """Cache keys of one U-Net call whose row chunks have these roles, in order.

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


class _Evaluations:
    """Stands in for the CFG denoiser the sampler calls; attributes pass through."""

    def __init__(self, model, run: SamplerRun):
        self._model = model
        self._run = run

    def __call__(self, *args, **kwargs):
        run = self._run
        run.begin_evaluation()
        try:
            return self._model(*args, **kwargs)
        finally:
            if run.steps_by_evaluation:
                run.state.on_step_end(run.evaluations)
            run.evaluations += 1

    def __getattr__(self, name):
        return getattr(self._model, name)


# timestep samplers that evaluate the model once per given timestep (A1111's UniPC runs
# steps=len(timesteps) on a grid of its own, and its corrector evaluates step i+1's point before
# it calls back for step i); DDIM and PLMS step from one timestep to the next
_STEP_PER_TIMESTEP = frozenset({"unipc"})


def _funcname(sampler) -> str:
    """The sampler function's name (A1111 keeps the function itself, or its name, in funcname)."""
    fn = getattr(sampler, "funcname", None)
    return fn if isinstance(fn, str) else getattr(fn, "__name__", "")


def steps_by_evaluation(sampler) -> bool:
    """Does each model evaluation of this sampler make a step of its own?"""
    return _funcname(sampler) in _STEP_PER_TIMESTEP


def _floats(values) -> list[float]:
    """A device tensor's values in one read (once per run), or a list's."""
    return [float(v) for v in (values.tolist() if isinstance(values, torch.Tensor) else values)]


def run_schedule(kwargs: dict, funcname: str = "") -> Optional[tuple[list[float], str]]:
    """(the run's noise levels, high to low, one more than it has steps, and their axis) from
    the sampler's arguments.

    k-diffusion samplers get 'sigmas'; DDIM/PLMS/UniPC get ascending 'timesteps'. Read
    once per run, before sampling starts. None: no fixed schedule (DPM fast/adaptive)."""
    if kwargs.get("sigmas") is not None:
        return _floats(kwargs["sigmas"]), "sigma"
    if kwargs.get("timesteps") is not None:
        levels = sorted(_floats(kwargs["timesteps"]), reverse=True)
        if funcname in _STEP_PER_TIMESTEP and levels:
            levels.append(levels[-1] - 1.0)  # where its last step ends
        return levels, "timestep"
    return None


def _sigma_table(sd_model):
    acp = getattr(sd_model, "alphas_cumprod", None)
    if not isinstance(acp, torch.Tensor) or acp.ndim != 1 or len(acp) < 2:
        return None
    acp = acp.detach().double().cpu()
    return ((1 - acp) / acp).sqrt()


def percent_to_sigma(sd_model, percent: float) -> float:
    """sigma at timestep (1 - percent) * 999, log-interpolated (k-diffusion's t_to_sigma);
    percent 0 is +inf (from the start), 1 is 0 (to the end)."""
    if percent <= 0.0:
        return math.inf
    if percent >= 1.0:
        return 0.0
    forge = getattr(getattr(sd_model, "forge_objects", None), "unet", None)
    predictor = getattr(getattr(forge, "model", None), "predictor", None)
    if predictor is not None and hasattr(predictor, "percent_to_sigma"):
        return float(predictor.percent_to_sigma(percent))
    table = _sigma_table(sd_model)
    if table is None:
        raise ValueError("the model has no alphas_cumprod table to map start/end percent to noise levels")
    t = (1.0 - percent) * (len(table) - 1)
    lo, frac = int(math.floor(t)), t - math.floor(t)
    hi = min(lo + 1, len(table) - 1)
    return float(math.exp((1 - frac) * math.log(table[lo]) + frac * math.log(table[hi])))


def percent_to_timestep(percent: float, num_timesteps: int = 1000) -> float:
    """For DDIM/PLMS/UniPC, which call the model with integer timesteps."""
    if percent <= 0.0:
        return math.inf
    return (1.0 - percent) * (num_timesteps - 1)


def open_state(sd_model, sampler, cfg: DeepCacheConfig, depth: int, unet, kwargs) -> Optional[RunState]:
    """The RunState of one sampler call, or None when the sampler has no fixed schedule."""
    schedule = run_schedule(kwargs, _funcname(sampler))
    if schedule is None:
        return None
    levels, axis = schedule
    if axis == "sigma":
        start, end = (percent_to_sigma(sd_model, v) for v in (cfg.start_percent, cfg.end_percent))
    else:
        start, end = (percent_to_timestep(v) for v in (cfg.start_percent, cfg.end_percent))
    options = getattr(getattr(sampler, "config", None), "options", None) or {}
    # k-diffusion calls back after the first evaluation of a step in its second-order samplers
    return RunState(cfg, levels, depth, shared_store(unet).open_run(), start, end,
                    mid_step_callback=bool(options.get("second_order", False)))


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
            if not run.steps_by_evaluation:
                run.state.on_callback(d["i"])
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
