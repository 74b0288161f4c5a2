"""UNetOps for ldm/sgm-style U-Nets, whose blocks are called as module(h, emb, context).

Used by the A1111 adapter (ldm for SD1/SD2, sgm for SDXL), the demo model and the
benchmarks. Blocks are called as modules, so forward hooks (A1111's --lowvram)
still move their weights.
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


class LdmOps:
    def __init__(self, unet, timesteps: torch.Tensor, context: Optional[torch.Tensor] = None,
                 y: Optional[torch.Tensor] = None, *, timestep_embedding: Optional[Callable] = None,
                 cat: Callable = torch.cat):
        self.unet = unet
        self.timesteps = timesteps
        self.context = context
        self.y = y
        self.timestep_embedding = timestep_embedding or host_timestep_embedding(unet)
        self.cat = cat
        self.emb = None
        self.x_dtype = None

    def begin(self, x):
        u = self.unet
        self.x_dtype = x.dtype
        t_emb = self.timestep_embedding(self.timesteps, u.model_channels, repeat_only=False)
        emb = u.time_embed(t_emb)
        if getattr(u, "num_classes", None) is not None:
            if self.y is None or self.y.shape[0] != x.shape[0]:
                raise ValueError("this U-Net is class-conditional: y must have one row per batch item")
            emb = emb + u.label_emb(self.y)
        self.emb = emb
        dtype = getattr(u, "dtype", None)
        return x.type(dtype) if isinstance(dtype, torch.dtype) else x

    def input_block(self, i, h):
        h = self.unet.input_blocks[i](h, self.emb, self.context)
        return h, h

    def skip_input_block(self, i):
        pass

    def middle_block(self, h):
        return self.unet.middle_block(h, self.emb, self.context)

    def skip_middle_block(self):
        pass

    def output_block(self, i, h, hsp, output_shape):
        h = self.cat([h, hsp], 1)
        return self.unet.output_blocks[i](h, self.emb, self.context)

    def skip_output_block(self, i):
        pass

    def finish(self, h):
        return self.unet.out(h.type(self.x_dtype))
