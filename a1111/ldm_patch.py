"""The A1111 side: DeepCache as an instance forward on the ldm/sgm UNetModel,
installed for one sampling run and removed when it ends.

Blocks are called as modules (core.LdmOps), so --lowvram/--medvram hooks still
move their weights; skips are joined with the th.cat of the U-Net's module, which
A1111 replaces with one that resizes mismatched skips.
"""
from __future__ import annotations

import sys
from typing import Optional

import torch

from ..core import Mode, unet_forward
from ..core.cost import architecture_costs
from ..core.ldm_ops import LdmOps, host_timestep_embedding
from .clock import SamplerRun
from .log import log_once


def host_cat(unet):
    th = getattr(sys.modules.get(type(unet).__module__), "th", None)
    return getattr(th, "cat", torch.cat)


def foreign_forward(unet) -> Optional[str]:
    """Who else replaced this U-Net's forward on the instance, if anyone."""
    fwd = vars(unet).get("forward")
    if fwd is None or getattr(getattr(fwd, "__self__", None), "_deepcache_patch", False):
        return None
    # sd-webui-controlnet keeps the forward it replaced in _original_forward
    name = getattr(fwd, "__qualname__", None) or type(fwd).__name__
    if hasattr(unet, "_original_forward") or "controlnet" in (getattr(fwd, "__module__", "") or "").lower():
        return "ControlNet (sd-webui-controlnet) runs the U-Net with its own forward"
    return f"another extension replaced the U-Net forward ({name})"


class LdmPatch:
    _deepcache_patch = True

    def __init__(self, unet, depth: int, branch: int, run: SamplerRun, *, sd_model=None, estimate_cost=True):
        self.unet = unet
        self.depth = depth
        self.branch = branch
        self.run = run
        self.sd_model = sd_model
        self.checkpoint = getattr(sd_model, "sd_checkpoint_info", None)
        self.estimate_cost = estimate_cost
        self.cat = host_cat(unet)
        self.timestep_embedding = host_timestep_embedding(unet)
        self.original = None

    def install(self) -> None:
        self.original = self.unet.forward  # the class forward (A1111's sd_unet wrapper)
        self.unet.forward = self.forward

    def remove(self) -> None:
        if vars(self.unet).get("forward") == self.forward:
            del self.unet.forward

    def _ops(self, timesteps, context, y):
        return LdmOps(self.unet, timesteps, context, y, timestep_embedding=self.timestep_embedding, cat=self.cat)

    def _estimate(self, x, timesteps, context, y) -> None:
        if not self.estimate_cost or self.run.state.cost_fraction is not None:
            return
        # one row: the fraction does not depend on the batch size
        x, timesteps = x[:1], timesteps[:1]
        context = None if context is None else context[:1]
        y = None if y is None else y[:1]
        costs = architecture_costs(self.unet, lambda: self._ops(timesteps, context, y), x, context)
        if costs is not None:
            self.run.state.cost_fraction = costs.cached_fraction(self.branch)

    def forward(self, x, timesteps=None, context=None, y=None, *args, **kwargs):
        state = self.run.state
        if args or kwargs or state.disabled_reason is not None or self.run.sigma is None:
            # unknown extra inputs are someone else's: their forward must see them
            return self.original(x, timesteps, context, y, *args, **kwargs)
        if self.sd_model is not None and getattr(self.sd_model, "sd_checkpoint_info", None) is not self.checkpoint:
            state.disable("the refiner switched checkpoints")
            return self.original(x, timesteps, context, y)
        keys = self.run.keys(["row"] * x.shape[0], x.shape[1:])
        mode = Mode.PASSTHROUGH if keys is None else state.decide(self.run.sigma, keys)
        if mode is Mode.PASSTHROUGH:
            return self.original(x, timesteps, context, y)
        try:
            ops = self._ops(timesteps, context, y)
            if mode is Mode.CACHED:
                return unet_forward(ops, x, self.depth, self.branch, deep=state.cache.read(keys))
            out = unet_forward(ops, x, self.depth, self.branch,
                               store_deep=lambda h: state.cache.write(keys, h))
            self._estimate(x, timesteps, context, y)
            return out
        except Exception as e:  # never fail a generation because of the cache
            state.disable(f"error in the cached forward: {e}")
            log_once(("ldm-forward", type(e).__name__, str(e)),
                     f"DeepCache failed ({e}); this generation continues with the normal U-Net.", e)
            return self.original(x, timesteps, context, y)
