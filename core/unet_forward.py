"""The DeepCache forward over an openaimodel-family U-Net.

The host supplies its per-block calls as a UNetOps object (ComfyUI's
forward_timestep_embed with its patches and ControlNet, ldm/sgm module calls in
A1111, ...). This loop only decides which blocks run, and where the deep feature
(the input of output block L-1-b) is stored or reused.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

import torch


class NotAUNetError(TypeError):
    """The model has no input_blocks / middle_block / output_blocks U-Net."""


@dataclass(frozen=True)
class UNetInfo:
    depth: int  # L: number of input blocks == number of output blocks == skip branches


def describe_unet(unet) -> UNetInfo:
    """Check that unet is an openaimodel-family U-Net and return its depth."""
    name = type(unet).__name__
    for attr in ("input_blocks", "middle_block", "output_blocks"):
        if not hasattr(unet, attr):
            raise NotAUNetError(
                f"{name} is not an openaimodel U-Net (no {attr}); DeepCache supports SD1.x, SD2.x, SDXL "
                "and other UNetModel checkpoints, not DiT models such as Flux or SD3")
    n_in, n_out = len(unet.input_blocks), len(unet.output_blocks)
    if n_in == 0 or n_in != n_out:
        raise NotAUNetError(f"{name} has {n_in} input and {n_out} output blocks; DeepCache needs equal counts")
    return UNetInfo(depth=n_in)


class UNetOps(Protocol):
    """One U-Net evaluation, block by block, in the host's own way."""

    def begin(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the embeddings; return the h that enters input block 0."""
    def input_block(self, i: int, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run input block i; return (the skip to push, the h that goes on)."""
    def skip_input_block(self, i: int) -> None: ...
    def middle_block(self, h: torch.Tensor) -> torch.Tensor: ...
    def skip_middle_block(self) -> None: ...
    def output_block(self, i: int, h: torch.Tensor, hsp: torch.Tensor, output_shape) -> torch.Tensor: ...
    def skip_output_block(self, i: int) -> None: ...
    def finish(self, h: torch.Tensor) -> torch.Tensor: ...
    def keep(self, h: torch.Tensor) -> torch.Tensor:
        """h, or a copy of it where this host's block patches would change it in place."""


def unet_forward(ops: UNetOps, x: torch.Tensor, depth: int, branch: int, *,
                 deep: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(output, deep feature): the whole U-Net when deep is None, returning the deep feature
    (the input of output block L-1-b) with the output; the shallow branch b on a stored deep
    feature otherwise, returning (output, None).

    Branch b: input blocks 0..b and output blocks L-1-b..L-1 run on a cached step. The loop
    calls nothing but the host's blocks, so a compiled U-Net traces it as one graph per mode.
    """
    cut = depth - 1 - branch
    shallow = deep is not None
    feature = None
    h = ops.begin(x)
    hs = []
    for i in range(depth):
        if shallow and i > branch:
            ops.skip_input_block(i)
            continue
        skip, h = ops.input_block(i, h)
        hs.append(skip)
    if shallow:
        ops.skip_middle_block()
    else:
        h = ops.middle_block(h)
    for i in range(depth):
        if i < cut and shallow:
            ops.skip_output_block(i)
            continue
        if i == cut:  # output patches may change h in place: neither the store nor the cache may see it
            if shallow:
                h = ops.keep(deep)
            else:
                feature = ops.keep(h)
        hsp = hs.pop()
        output_shape = hs[-1].shape if hs else None
        h = ops.output_block(i, h, hsp, output_shape)
    return ops.finish(h), feature
