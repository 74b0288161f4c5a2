"""The Forge side: DeepCache as the U-Net function wrapper of a UnetPatcher clone.

Forge resets p.sd_model.forge_objects before every sampling, so the clone lives
for one sampling only. The wrapper replays KModel.apply_model (input scaling,
dtype casts, timestep, denoised output) around the DeepCache forward.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..core import Mode, unet_forward
from .clock import SamplerRun
from .forge_ops import ForgeOps
from .log import log_once

_KNOWN = ("c_crossattn", "c_concat", "control", "control_model", "transformer_options")


def foreign_wrapper(patcher) -> Optional[str]:
    fn = getattr(patcher, "model_options", {}).get("model_function_wrapper")
    if fn is None or isinstance(fn, ForgeWrapper):
        return None
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    return f"another extension set Forge's U-Net function wrapper ({name})"


class ForgeWrapper:
    """model_function_wrapper(apply_model, {"input", "timestep", "c", "cond_or_uncond"})."""

    def __init__(self, depth: int, branch: int):
        self.depth = depth
        self.branch = branch
        self.run: Optional[SamplerRun] = None

    def __deepcopy__(self, memo):
        return self  # UnetPatcher.clone deep-copies model_options; the wrapper is shared state

    def __call__(self, apply_model, args):
        x, t, c = args["input"], args["timestep"], args["c"]
        run = self.run
        if run is None or run.sigma is None or run.state.disabled_reason is not None:
            return apply_model(x, t, **c)
        if set(c) - set(_KNOWN) - {"y"}:
            return apply_model(x, t, **c)  # inputs this forward would not pass on
        roles = ["cond" if k == 0 else "uncond" for k in args.get("cond_or_uncond", [])] or ["row"]
        if x.shape[0] % len(roles):
            return apply_model(x, t, **c)
        keys = run.keys(roles, (x.shape[0] // len(roles),) + tuple(x.shape[1:]))
        mode = Mode.PASSTHROUGH if keys is None else run.state.decide(run.sigma, keys)
        if mode is Mode.PASSTHROUGH:
            return apply_model(x, t, **c)
        try:
            return self._apply(apply_model.__self__, x, t, c, mode, keys)
        except Exception as e:  # never fail a generation because of the cache
            run.state.disable(f"error in the cached forward: {e}")
            log_once(("forge-forward", type(e).__name__, str(e)),
                     f"DeepCache failed ({e}); this generation continues with the normal U-Net.", e)
            return apply_model(x, t, **c)

    def _apply(self, kmodel, x, sigma, c, mode, keys):
        state = self.run.state
        dtype = kmodel.computation_dtype
        xc = kmodel.predictor.calculate_input(sigma, x)
        if c.get("c_concat") is not None:
            xc = torch.cat([xc, c["c_concat"]], dim=1)
        xc = xc.to(dtype)
        timesteps = kmodel.predictor.timestep(sigma).float()
        context = c["c_crossattn"].to(dtype)
        y = c.get("y")
        if y is not None and y.dtype not in (torch.int, torch.long):
            y = y.to(dtype)
        ops = ForgeOps(kmodel.diffusion_model, timesteps, context, y, c.get("control"),
                       c.get("transformer_options", {}))
        if mode is Mode.CACHED:
            out = unet_forward(ops, xc, self.depth, self.branch, deep=state.cache.read(keys))
        else:
            out = unet_forward(ops, xc, self.depth, self.branch, store_deep=lambda h: state.cache.write(keys, h))
        return kmodel.predictor.calculate_denoised(sigma, out.float(), x)


def install(p, wrapper: ForgeWrapper) -> None:
    """Put the wrapper on a clone of this sampling's UnetPatcher (idempotent)."""
    patcher = p.sd_model.forge_objects.unet
    if patcher.model_options.get("model_function_wrapper") is wrapper:
        return
    clone = patcher.clone()
    clone.set_model_unet_function_wrapper(wrapper)
    p.sd_model.forge_objects.unet = clone
