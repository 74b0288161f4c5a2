"""DeepCache through the host's own U-Net forward, whoever wrote it.

For forwards that loop over unet.input_blocks / middle_block / output_blocks calling each
block as a module (ldm's and sgm's UNetModel.forward in A1111, and the loops extensions
put in its place, such as sd-webui-controlnet's): a full call runs that forward unchanged
and takes the deep feature from the input of output block L-1-b (the part that is not
the skip). A cached call runs the same forward with the deep path stood in: its blocks
return placeholders of the shapes they had, without computing, and output block L-1-b
gets the stored deep feature in place of its placeholder. Whatever the forward adds to
the blocks that run (ControlNet residuals) lands on them exactly as in a full call.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

_PARTS = ("input_blocks", "middle_block", "output_blocks")


class UnsupportedForward(RuntimeError):
    """The host's forward does not run the U-Net's blocks once each, as this needs."""


class _Placeholder(nn.Module):
    """A skipped block: returns a tensor of the block's shape, computes nothing."""

    def __init__(self, out: torch.Tensor):
        super().__init__()
        self.out = out

    def forward(self, *args, **kwargs):
        return self.out


class _Spliced(nn.Module):
    """Output block L-1-b on a cached call: the stored deep feature replaces the
    placeholder part of its input; the skip part (and its residual) stays."""

    def __init__(self, block: nn.Module, stride: tuple):
        super().__init__()
        self.block = block
        self.stride = stride  # the input's memory layout in a full call: kernels then compute alike
        self.deep: Optional[torch.Tensor] = None
        self.calls = 0

    def forward(self, h, *args, **kwargs):
        self.calls += 1
        deep, c = self.deep, self.deep.shape[1]
        spliced = torch.empty_strided(h.shape, self.stride, dtype=h.dtype, device=h.device)
        spliced[:, :c] = deep
        spliced[:, c:] = h[:, c:]
        return self.block(spliced, *args, **kwargs)


class StandIns:
    """One U-Net's deep path for one branch: recorded on full calls, stood in on cached ones."""

    def __init__(self, unet: nn.Module, branch: int):
        self.unet = unet
        depth = len(unet.input_blocks)
        self.branch = branch
        self.cut = depth - 1 - branch
        # the deep path in the order the forward runs it; the last one feeds output block `cut`
        self.deep_path = ([("input_blocks", i) for i in range(branch + 1, depth)] + [("middle_block", None)]
                          + [("output_blocks", i) for i in range(self.cut)])
        self._shapes: dict = {}   # call input shape -> ({part: (shape, dtype, device)}, block cut's input stride)
        self._swaps: dict = {}    # call input shape -> (modules to swap in, spliced block)

    def _module(self, part, i):
        m = self.unet._modules[part]
        return m if i is None else m[i]

    def full(self, host: Callable[[], torch.Tensor], x: torch.Tensor,
             store: Callable[[torch.Tensor], None]) -> torch.Tensor:
        """The host's forward unchanged; hands the deep feature to store."""
        shapes, taken = {}, []

        def record(part):
            def hook(module, args, out):
                shapes[part] = (tuple(out.shape), out.dtype, out.device)
            return hook

        def take_deep(module, args):
            taken.append(args[0].stride())
            if len(taken) == 1 and self.deep_path[-1] in shapes:
                store(args[0][:, :shapes[self.deep_path[-1]][0][1]])

        hooks = [self._module(*part).register_forward_hook(record(part)) for part in self.deep_path]
        hooks.append(self._module("output_blocks", self.cut).register_forward_pre_hook(take_deep))
        try:
            out = host()
        finally:
            for h in hooks:
                h.remove()
        if len(taken) != 1 or len(shapes) != len(self.deep_path):
            raise UnsupportedForward(
                "the U-Net forward in use does not run each U-Net block once per call "
                f"(output block {self.cut} ran {len(taken)} times), so its deep features cannot be reused")
        key, layout = tuple(x.shape), (shapes, taken[0])
        if self._shapes.get(key) != layout:
            self._shapes[key] = layout
            self._swaps.pop(key, None)
        return out

    def cached(self, host: Callable[[], torch.Tensor], x: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        """The host's forward with the deep path stood in and the stored feature spliced in."""
        key = tuple(x.shape)
        if key not in self._swaps:
            self._swaps[key] = self._build(self._shapes[key])
        modules, spliced = self._swaps[key]
        unet_modules = self.unet._modules
        saved = {part: unet_modules[part] for part in _PARTS}
        spliced.deep, spliced.calls = deep, 0
        unet_modules.update(modules)
        try:
            out = host()
        finally:
            unet_modules.update(saved)
            spliced.deep = None
        if spliced.calls != 1:
            raise UnsupportedForward(f"the U-Net forward in use ran output block {self.cut} "
                                     f"{spliced.calls} times in one call (an extra U-Net pass)")
        return out

    def _build(self, layout):
        shapes, stride = layout
        placeholders = {part: _Placeholder(torch.zeros(s, dtype=d, device=dev)) for part, (s, d, dev) in shapes.items()}
        inputs = list(self.unet._modules["input_blocks"])
        outputs = list(self.unet._modules["output_blocks"])
        for (part, i), p in placeholders.items():
            if part == "input_blocks":
                inputs[i] = p
            elif part == "output_blocks":
                outputs[i] = p
        spliced = _Spliced(outputs[self.cut], stride)
        outputs[self.cut] = spliced
        modules = {"input_blocks": nn.ModuleList(inputs), "middle_block": placeholders[("middle_block", None)],
                   "output_blocks": nn.ModuleList(outputs)}
        return modules, spliced
