"""Watchers for what must never happen on the sampling path: a device-to-host read
(a synchronisation on CUDA) made by the plugin's code, and a fake or meta tensor
reaching a U-Net module."""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIRS = tuple(str(ROOT / d) for d in ("core", "nodes", "a1111"))
HOST_READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__float__, torch.Tensor.__int__,
              torch.Tensor.__bool__, torch.Tensor.__index__, torch.Tensor.numpy, torch.Tensor.cpu}


TORCH_DIR = str(Path(torch.__file__).parent)


def _plugin_frame(allowed):
    """The plugin's line that made this read itself (not a host function it called)."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(TORCH_DIR):
        frame = frame.f_back  # torch's own Python wrappers around the read
    if frame is None or not frame.f_code.co_filename.startswith(PLUGIN_DIRS):
        return None
    caller = frame
    while frame is not None:
        if frame.f_code.co_name in allowed:
            return None
        frame = frame.f_back
    return f"{caller.f_code.co_filename}:{caller.f_lineno} ({caller.f_code.co_name})"


class HostReads(TorchFunctionMode):
    """Records each read of a tensor's value into Python made from the plugin's code, except
    inside the functions named in `allowed` (once per run, before sampling starts)."""

    def __init__(self, allowed=()):
        super().__init__()
        self.allowed = set(allowed)
        self.found: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in HOST_READS:
            where = _plugin_frame(self.allowed)
            if where is not None:
                self.found.append(f"{getattr(func, '__name__', func)} at {where}")
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def no_fake_or_meta_inputs(module: torch.nn.Module, found: list):
    """Records every U-Net module call that gets a fake or meta tensor."""
    from torch._subclasses.fake_tensor import FakeTensor

    def check(mod, args):
        for a in args:
            if isinstance(a, torch.Tensor) and (isinstance(a, FakeTensor) or a.is_meta):
                found.append(type(mod).__name__)

    hooks = [m.register_forward_pre_hook(check) for m in module.modules()]
    try:
        yield found
    finally:
        for h in hooks:
            h.remove()
