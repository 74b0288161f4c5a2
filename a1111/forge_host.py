"""Forge: DeepCache as the U-Net function wrapper of a UnetPatcher clone.

Forge resets p.sd_model.forge_objects before every sampling, so the clone lives for one
sampling only and the loaded model is never patched. The wrapper replays KModel.apply_model
(input scaling, dtype casts, timestep, denoised output) around the DeepCache forward, whose
blocks run the way Forge's IntegratedUNet2DConditionModel.forward runs them: block
modifiers, ControlNet residuals from c["control"] (Forge's built-in ControlNet), block
patches, output_shape for Upsample, the group-norm wrapper.
"""
from __future__ import annotations

import sys
from typing import Optional

import torch

from ..core import BlockOps, call_unet, open_call, unet_forward
from .sampler_hook import SamplerRun

_KNOWN = ("c_crossattn", "c_concat", "control", "control_model", "transformer_options", "y")


class ForgeOps(BlockOps):
    def __init__(self, unet, timesteps, context, y=None, control=None, transformer_options=None):
        module = sys.modules.get(type(unet).__module__)
        kw = {"apply_control": module.apply_control} if hasattr(module, "apply_control") else {}
        super().__init__(unet, timesteps, context, y, control, transformer_options, **kw)
        self.modifiers = self.to.get("block_modifiers", [])

    def run_block(self, block, h, output_shape=None):
        if output_shape is None:
            return block(h, self.emb, self.context, self.to)
        return block(h, self.emb, self.context, self.to, output_shape)

    def modify(self, h, when):
        for modifier in self.modifiers:
            h = modifier(h, when, self.to)
        return h

    def finish(self, h):
        self.to["block"] = ("last", 0)
        h = self.modify(h, "before")
        if "group_norm_wrapper" in self.to:
            h = self.to["group_norm_wrapper"](self.unet.out[0], h, self.to)
            h = self.unet.out[1:](h)
        else:
            h = self.unet.out(h)
        return self.modify(h, "after").type(self.x_dtype)


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

        def host():
            return apply_model(x, t, **c)

        if run is None or not run.evaluating or set(c) - set(_KNOWN):
            return host()  # no run, or inputs this forward would not pass on
        roles = ["cond" if k == 0 else "uncond" for k in args.get("cond_or_uncond", [])] or ["row"]

        def keys():
            if x.shape[0] % len(roles):
                return None
            return run.keys(roles, (x.shape[0] // len(roles),) + tuple(x.shape[1:]))

        def forward(call):
            return self._apply(apply_model.__self__, x, t, c, call)

        return call_unet(lambda: open_call(run.state, keys(), x), host, forward)

    def _apply(self, kmodel, x, sigma, c, call):
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
        out, deep = unet_forward(ops, xc, call.depth, call.branch, deep=call.deep)
        return kmodel.predictor.calculate_denoised(sigma, out.float(), x), deep


class ForgeHost:
    name = "Forge"
    rows_in_cfg_batch = False  # Forge's x there is not duplicated; its chunks say cond/uncond

    def __init__(self, p):
        self.sd_model = p.sd_model
        self.patcher = p.sd_model.forge_objects.unet
        self.unet = self.patcher.model.diffusion_model
        self.wrapper: Optional[ForgeWrapper] = None

    def blocker(self) -> Optional[str]:
        return foreign_wrapper(self.patcher)

    def prepare(self, p, depth: int, branch: int) -> None:
        """Put the wrapper on a clone of this sampling's UnetPatcher (idempotent: Forge
        calls the hook twice for the hires pass, and a second call finds its own)."""
        patcher = p.sd_model.forge_objects.unet
        existing = patcher.model_options.get("model_function_wrapper")
        if isinstance(existing, ForgeWrapper):
            self.wrapper = existing
            return
        self.wrapper = ForgeWrapper(depth, branch)
        clone = patcher.clone()
        clone.set_model_unet_function_wrapper(self.wrapper)
        p.sd_model.forge_objects.unet = clone

    def attach(self, run: SamplerRun) -> None:
        self.wrapper.run = run

    def detach(self) -> None:
        if self.wrapper is not None:
            self.wrapper.run = None
