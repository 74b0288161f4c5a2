"""What a cached step costs next to a full one: FLOPs per block, counted with torch's
FlopCounterMode on fake or meta tensors (no compute). Never on the sampling path: the
run reports measured time; this model serves previews (the ComfyUI panel, the A1111 tab)
and the benchmarks' ceilings, once per architecture and size (one memo, one lock).

S(b) = (embeddings + input blocks 0..b + output blocks L-1-b..L-1 + out) / full,
and the ideal speed-up of interval N is N / (1 + (N-1) S).
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from .unet_forward import unet_forward

# The CPU kernel of scaled_dot_product_attention is not in torch's FLOP registry.
_EXTRA_FLOPS = {}
_cpu_sdpa = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
if _cpu_sdpa is not None:
    def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(query_shape, key_shape, value_shape)
    _EXTRA_FLOPS[_cpu_sdpa] = _cpu_sdpa_flops


@dataclass(frozen=True)
class BlockCosts:
    """FLOPs of one evaluation, per part of the U-Net."""
    other: int               # embeddings and the final out layer
    inputs: tuple[int, ...]
    middle: int
    outputs: tuple[int, ...]

    @property
    def total(self) -> int:
        return self.other + sum(self.inputs) + self.middle + sum(self.outputs)

    def cached_fraction(self, branch: int) -> float:
        depth = len(self.inputs)
        shallow = self.other + sum(self.inputs[: branch + 1]) + sum(self.outputs[depth - 1 - branch:])
        return shallow / self.total if self.total else 1.0


class _CountingOps:
    """Wraps UNetOps and counts the FLOPs of each block call."""

    def __init__(self, ops, depth):
        self.ops = ops
        self.other = 0
        self.middle = 0
        self.inputs = [0] * depth
        self.outputs = [0] * depth

    def _count(self, fn, *args):
        with FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOPS) as fc:
            out = fn(*args)
        return out, fc.get_total_flops()

    def begin(self, x):
        h, f = self._count(self.ops.begin, x)
        self.other += f
        return h

    def input_block(self, i, h):
        out, self.inputs[i] = self._count(self.ops.input_block, i, h)
        return out

    def middle_block(self, h):
        h, self.middle = self._count(self.ops.middle_block, h)
        return h

    def output_block(self, i, h, hsp, output_shape):
        h, self.outputs[i] = self._count(self.ops.output_block, i, h, hsp, output_shape)
        return h

    def finish(self, h):
        out, f = self._count(self.ops.finish, h)
        self.other += f
        return out

    def skip_input_block(self, i):
        self.ops.skip_input_block(i)

    def skip_middle_block(self):
        self.ops.skip_middle_block()

    def skip_output_block(self, i):
        self.ops.skip_output_block(i)

    def keep(self, h):
        return self.ops.keep(h)


def block_costs(make_ops: Callable[[], object], x: torch.Tensor, depth: int) -> BlockCosts:
    """Count FLOPs of one full forward of the ops make_ops() builds on input x.

    A real module runs on fake tensors, a meta one on meta tensors: shapes only, no
    compute, no memory.
    """
    fake = not x.is_meta
    ctx = contextlib.nullcontext()
    if fake:
        from torch._subclasses.fake_tensor import FakeTensorMode
        ctx = FakeTensorMode(allow_non_fake_inputs=True)
    with ctx as mode, torch.no_grad():
        xi = mode.from_tensor(x) if fake else x
        counting = _CountingOps(make_ops(), depth)
        unet_forward(counting, xi, depth, 0)
    return BlockCosts(counting.other, tuple(counting.inputs), counting.middle, tuple(counting.outputs))


def branch_cost_fractions(costs: BlockCosts) -> list[float]:
    return [costs.cached_fraction(b) for b in range(len(costs.inputs))]


def estimated_speedup(interval: int, cached_fraction: float) -> float:
    """Ideal speed-up of a uniform schedule: N / (1 + (N-1) S)."""
    return interval / (1 + (interval - 1) * cached_fraction)


def speedup_from_counts(full: int, cached: int, cached_fraction: float) -> Optional[float]:
    """U-Net time of `full` full and `cached` cached evaluations next to all full ones."""
    total = full + cached
    return total / (full + cached * cached_fraction) if total else None


def try_block_costs(make_ops, x, depth) -> Optional[BlockCosts]:
    """block_costs, or None where the model's ops cannot run on fake tensors."""
    try:
        return block_costs(make_ops, x, depth)
    except Exception:  # an estimate must never stop sampling
        return None


_memo: dict = {}
_lock = threading.Lock()


def architecture_costs(unet, make_ops, x: torch.Tensor, context: Optional[torch.Tensor] = None,
                       ) -> Optional[BlockCosts]:
    """try_block_costs, counted once per U-Net architecture and input size (hosts reload the
    same checkpoint as new objects, and a count takes seconds), one count at a time."""
    arch = (type(unet).__qualname__, getattr(unet, "model_channels", None), len(unet.input_blocks),
            sum(p.numel() for p in unet.parameters()))
    key = (arch, tuple(x.shape[1:]), None if context is None else tuple(context.shape[1:]))
    with _lock:
        if key not in _memo:
            _memo[key] = try_block_costs(make_ops, x, len(unet.input_blocks))
        return _memo[key]
