"""UNetOps for Forge's IntegratedUNet2DConditionModel (backend/nn/unet.py).

Mirrors the order of Forge's own forward: block modifiers, ControlNet residuals
(apply_control), input/output block patches, output_shape for Upsample, the
group-norm wrapper. On a cached step the skipped blocks' control residuals are
popped unused and transformer_index advances past their transformers, so the
blocks that do run get the residuals and patch indices they would get in a full
forward.
"""
from __future__ import annotations

import sys

import torch

from ..core.ldm_ops import host_timestep_embedding


def _transformers(block) -> int:
    return sum(1 for layer in block if type(layer).__name__ == "SpatialTransformer")


def _apply_control(h, control, name):
    if control is not None and name in control and len(control[name]) > 0:
        ctrl = control[name].pop()
        if ctrl is not None:
            h += ctrl
    return h


def _drop_control(control, name) -> None:
    if control is not None and name in control and len(control[name]) > 0:
        control[name].pop()


class ForgeOps:
    def __init__(self, unet, timesteps, context, y=None, control=None, transformer_options=None):
        self.unet = unet
        self.timesteps = timesteps
        self.context = context
        self.y = y
        self.control = control
        self.to = {} if transformer_options is None else transformer_options
        self.patches = self.to.get("patches", {})
        self.modifiers = self.to.get("block_modifiers", [])
        module = sys.modules.get(type(unet).__module__)
        self.apply_control = getattr(module, "apply_control", _apply_control)
        self.timestep_embedding = host_timestep_embedding(unet)
        self.emb = None
        self.x_dtype = None

    def _modify(self, h, when):
        for modifier in self.modifiers:
            h = modifier(h, when, self.to)
        return h

    def begin(self, x):
        u = self.unet
        self.x_dtype = x.dtype
        self.to["original_shape"] = list(x.shape)
        self.to["transformer_index"] = 0
        emb = u.time_embed(self.timestep_embedding(self.timesteps, u.model_channels, repeat_only=False).to(x.dtype))
        if u.num_classes is not None:
            emb = emb + u.label_emb(self.y)
        self.emb = emb
        return x

    def input_block(self, i, h):
        self.to["block"] = ("input", i)
        h = self._modify(h, "before")
        h = self.unet.input_blocks[i](h, self.emb, self.context, self.to)
        h = self.apply_control(h, self.control, "input")
        h = self._modify(h, "after")
        for patch in self.patches.get("input_block_patch", []):
            h = patch(h, self.to)
        skip = h
        for patch in self.patches.get("input_block_patch_after_skip", []):
            h = patch(h, self.to)
        return skip, h

    def skip_input_block(self, i):
        _drop_control(self.control, "input")
        self.to["transformer_index"] += _transformers(self.unet.input_blocks[i])

    def middle_block(self, h):
        self.to["block"] = ("middle", 0)
        h = self._modify(h, "before")
        h = self.unet.middle_block(h, self.emb, self.context, self.to)
        h = self.apply_control(h, self.control, "middle")
        return self._modify(h, "after")

    def skip_middle_block(self):
        _drop_control(self.control, "middle")
        self.to["transformer_index"] += _transformers(self.unet.middle_block)

    def output_block(self, i, h, hsp, output_shape):
        self.to["block"] = ("output", i)
        hsp = self.apply_control(hsp, self.control, "output")
        for patch in self.patches.get("output_block_patch", []):
            h, hsp = patch(h, hsp, self.to)
        h = torch.cat([h, hsp], dim=1)
        h = self._modify(h, "before")
        h = self.unet.output_blocks[i](h, self.emb, self.context, self.to, output_shape)
        return self._modify(h, "after")

    def skip_output_block(self, i):
        _drop_control(self.control, "output")
        self.to["transformer_index"] += _transformers(self.unet.output_blocks[i])

    def finish(self, h):
        self.to["block"] = ("last", 0)
        h = self._modify(h, "before")
        if "group_norm_wrapper" in self.to:
            h = self.to["group_norm_wrapper"](self.unet.out[0], h, self.to)
            h = self.unet.out[1:](h)
        else:
            h = self.unet.out(h)
        h = self._modify(h, "after")
        return h.type(self.x_dtype)
