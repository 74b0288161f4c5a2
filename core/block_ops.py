"""UNetOps for the openaimodel family: one U-Net evaluation block by block, in the order
the hosts' own forwards run it (ComfyUI's UNetModel._forward, Forge's
IntegratedUNet2DConditionModel.forward, ldm/sgm's UNetModel.forward).

BlockOps carries what every host does around a block: ControlNet/T2I residuals, block
patches, and the transformer_options that GLIGEN and attention patches key on (block,
transformer_index). A host subclass says how one block runs and how the evaluation
starts and ends. A skipped block does what a full forward would have done to that
bookkeeping: its control residual is dropped and transformer_index moves past its
transformers, so the blocks that do run get their own residuals and indices.
"""
from __future__ import annotations

import sys
from typing import Callable, Optional

import torch


def host_timestep_embedding(unet) -> Callable:
    """The timestep_embedding function of the module that defines the U-Net class."""
    for cls in type(unet).__mro__:
        fn = getattr(sys.modules.get(cls.__module__), "timestep_embedding", None)
        if fn is not None:
            return fn
    raise TypeError(f"no timestep_embedding next to {type(unet).__name__}")


def apply_control(h, control, name):
    """Add the next residual of control[name] (popped from the end, as the hosts do)."""
    if control is not None and name in control and len(control[name]) > 0:
        ctrl = control[name].pop()
        if ctrl is not None:
            h += ctrl
    return h


def _is_transformer(layer) -> bool:
    return any(c.__name__ == "SpatialTransformer" for c in type(layer).__mro__)


def transformer_count(block) -> int:
    return 0 if block is None else sum(1 for layer in block if _is_transformer(layer))


class BlockOps:
    """The UNetOps protocol of core.unet_forward over an openaimodel-family U-Net."""

    def __init__(self, unet, timesteps, context=None, y=None, control=None, transformer_options=None, *,
                 apply_control: Callable = apply_control):
        self.unet = unet
        self.timesteps = timesteps
        self.context = context
        self.y = y
        # our own lists to pop from: the host's stay whole for its forward, should it run after us
        self.control = None if not control else {k: list(v) for k, v in control.items()}
        self.to = {} if transformer_options is None else transformer_options
        self.patches = self.to.get("patches", {})
        self._apply_control = apply_control
        self.emb = None
        self.x_dtype = None

    # -- what a host says -------------------------------------------------------
    def run_block(self, block, h, output_shape=None):
        return block(h, self.emb, self.context)

    def embed(self, x):
        """The timestep (and label) embedding."""
        u = self.unet
        emb = u.time_embed(host_timestep_embedding(u)(self.timesteps, u.model_channels, repeat_only=False)
                           .to(x.dtype))
        if getattr(u, "num_classes", None) is not None:
            emb = emb + u.label_emb(self.y)
        return emb

    def modify(self, h, when: str):
        """Forge's block modifiers ("before"/"after" each block); none elsewhere."""
        return h

    def cat(self, h, hsp):
        return torch.cat([h, hsp], dim=1)

    def finish(self, h):
        return self.unet.out(h.type(self.x_dtype))

    def keep(self, h):
        """The deep feature, stored or reused: output block patches (FreeU) may change h in place."""
        return h.clone() if self.patches.get("output_block_patch") else h

    # -- the protocol -------------------------------------------------------------
    def begin(self, x):
        self.x_dtype = x.dtype
        self.to["original_shape"] = list(x.shape)
        self.to["transformer_index"] = 0
        self.emb = self.embed(x)
        return x

    def input_block(self, i, h):
        self.to["block"] = ("input", i)
        h = self.modify(h, "before")
        h = self.run_block(self.unet.input_blocks[i], h)
        h = self._apply_control(h, self.control, "input")
        h = self.modify(h, "after")
        for p in self.patches.get("input_block_patch", ()):
            h = p(h, self.to)
        skip = h
        for p in self.patches.get("input_block_patch_after_skip", ()):
            h = p(h, self.to)
        return skip, h

    def middle_block(self, h):
        self.to["block"] = ("middle", 0)
        h = self.modify(h, "before")
        if self.unet.middle_block is not None:
            h = self.run_block(self.unet.middle_block, h)
        h = self._apply_control(h, self.control, "middle")
        return self.modify(h, "after")

    def output_block(self, i, h, hsp, output_shape):
        self.to["block"] = ("output", i)
        hsp = self._apply_control(hsp, self.control, "output")
        for p in self.patches.get("output_block_patch", ()):
            h, hsp = p(h, hsp, self.to)
        h = self.cat(h, hsp)
        del hsp
        h = self.modify(h, "before")
        h = self.run_block(self.unet.output_blocks[i], h, output_shape)
        return self.modify(h, "after")

    def _skip(self, block, name):
        if self.control and self.control.get(name):
            self.control[name].pop()
        if "transformer_index" in self.to:
            self.to["transformer_index"] += transformer_count(block)

    def skip_input_block(self, i):
        self._skip(self.unet.input_blocks[i], "input")

    def skip_middle_block(self):
        self._skip(self.unet.middle_block, "middle")

    def skip_output_block(self, i):
        self._skip(self.unet.output_blocks[i], "output")


class LdmOps(BlockOps):
    """ldm/sgm-style U-Nets whose blocks are called as module(h, emb, context) (the demo
    model, the benchmarks). Blocks are called as modules, so their hooks still run."""

    def __init__(self, unet, timesteps, context=None, y=None, *, timestep_embedding: Optional[Callable] = None,
                 cat: Callable = torch.cat):
        super().__init__(unet, timesteps, context, y)
        self._embedding = timestep_embedding or host_timestep_embedding(unet)
        self._cat = cat

    def embed(self, x):
        u = self.unet
        t_emb = self._embedding(self.timesteps, u.model_channels, repeat_only=False)
        emb = u.time_embed(t_emb.to(next(u.time_embed.parameters()).dtype))
        if getattr(u, "num_classes", None) is not None:
            if self.y is None or self.y.shape[0] != x.shape[0]:
                raise ValueError("this U-Net is class-conditional: y must have one row per batch item")
            emb = emb + u.label_emb(self.y)
        return emb

    def begin(self, x):
        super().begin(x)
        dtype = getattr(self.unet, "dtype", None)
        return x.type(dtype) if isinstance(dtype, torch.dtype) else x

    def cat(self, h, hsp):
        return self._cat([h, hsp], 1)
