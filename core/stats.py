"""Measured U-Net time of one run, and the speed-up it gives.

Each U-Net call is timed on the host side only: CUDA events recorded on the current
stream (no synchronisation; read once when the run ends), a monotonic clock elsewhere
(CPU work is synchronous). A cached call's saving is measured against the median full
call of the same input shape in the same run, so a first call that pays for warm-up or
compilation does not inflate the figure.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Optional

import torch


@dataclass(frozen=True)
class Measured:
    full_seconds: float     # U-Net time of the calls that ran the whole U-Net
    cached_seconds: float   # U-Net time of the cached calls
    saved_seconds: float    # what the cached calls would have cost in full, minus what they cost
    speedup: Optional[float]  # U-Net time with every call in full / U-Net time of this run


class _CudaSpan:
    __slots__ = ("stream", "start", "end")

    def __init__(self, device):
        self.stream = torch.cuda.current_stream(device)
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)
        self.start.record(self.stream)

    def stop(self):
        self.end.record(self.stream)

    def seconds(self) -> float:
        return self.start.elapsed_time(self.end) / 1000.0


class _ClockSpan:
    __slots__ = ("start", "end")

    def __init__(self):
        self.start = time.perf_counter()
        self.end = None

    def stop(self):
        self.end = time.perf_counter()

    def seconds(self) -> float:
        return (self.end or self.start) - self.start


class CallTimes:
    """The spans of one run's U-Net calls: (cached?, input shape, span)."""

    def __init__(self):
        self._spans: list = []

    def start(self, x: torch.Tensor):
        return _CudaSpan(x.device) if x.is_cuda else _ClockSpan()

    def stop(self, span, cached: bool, shape: tuple) -> None:
        span.stop()
        self._spans.append((cached, shape, span))

    def __len__(self):
        return len(self._spans)

    def measure(self) -> Measured:
        """Read every span (one wait for the last CUDA event) and sum them up."""
        last = next((s for _, _, s in reversed(self._spans) if isinstance(s, _CudaSpan)), None)
        if last is not None:
            last.end.synchronize()
        rows = [(cached, shape, span.seconds()) for cached, shape, span in self._spans]
        full = [(shape, t) for cached, shape, t in rows if not cached]
        cached = [(shape, t) for c, shape, t in rows if c]
        typical: dict = {}
        for shape, t in full:
            typical.setdefault(shape, []).append(t)
        typical = {shape: statistics.median(ts) for shape, ts in typical.items()}
        full_s = sum(t for _, t in full)
        cached_s = sum(t for _, t in cached)
        in_full = sum(typical.get(shape, t) for shape, t in cached)
        speedup = (full_s + in_full) / (full_s + cached_s) if cached and full_s + cached_s > 0 else None
        return Measured(full_s, cached_s, max(in_full - cached_s, 0.0), speedup)
