"""Deep-feature buffers on the model's device.

One CacheStore per U-Net is shared by every DeepCache node or script that patches
that U-Net (two samplers, a base and a refiner pass); each sampling run gets its own
RunCache inside it, so runs never read each other's features, and a run's buffers
are freed when it closes.
"""
from __future__ import annotations

import itertools
import threading
import weakref
from typing import Hashable, Sequence

import torch


class RunCache:
    """The deep features of one run, one buffer per (conditioning, batch shape), with
    the sampler step each was computed at.

    Buffers are allocated on the first write of a key and overwritten in place on
    later refresh steps, so a run allocates once per key and dtype.
    """

    def __init__(self, store: "CacheStore", run_id: int):
        self.store = store
        self.run_id = run_id
        self._buffers: dict[Hashable, torch.Tensor] = {}
        self._steps: dict[Hashable, int] = {}
        self.allocations = 0
        self.closed = False

    def has(self, keys: Sequence[Hashable], since: int = 0) -> bool:
        """Every key has a feature computed at step `since` or later."""
        return all(self._steps.get(k, -1) >= since for k in keys)

    def write(self, keys: Sequence[Hashable], feature: torch.Tensor, step: int = 0) -> None:
        """Store feature split into len(keys) equal row chunks, one per key."""
        if self.closed:
            return
        for key, rows in zip(keys, feature.chunk(len(keys), dim=0)):
            self._steps[key] = step
            buf = self._buffers.get(key)
            if buf is None or buf.shape != rows.shape or buf.dtype != rows.dtype or buf.device != rows.device:
                buf = torch.empty_like(rows)  # the feature's own memory layout
                self._buffers[key] = buf
                self.allocations += 1
            buf.copy_(rows)

    def read(self, keys: Sequence[Hashable]) -> torch.Tensor:
        """The features of keys stacked by rows: for one key the buffer itself (no copy; the
        forward that reads it copies it where a host patch would change it in place)."""
        parts = [self._buffers[k] for k in keys]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)

    @property
    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self._buffers.values())

    def close(self) -> None:
        self._buffers.clear()
        self._steps.clear()
        self.closed = True
        self.store._forget(self)


class CacheStore:
    """All runs' caches for one U-Net."""

    def __init__(self):
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._runs: dict[int, RunCache] = {}

    def open_run(self) -> RunCache:
        with self._lock:
            run = RunCache(self, next(self._ids))
            self._runs[run.run_id] = run
            return run

    def _forget(self, run: RunCache) -> None:
        with self._lock:
            self._runs.pop(run.run_id, None)

    @property
    def open_runs(self) -> int:
        return len(self._runs)

    @property
    def nbytes(self) -> int:
        return sum(r.nbytes for r in list(self._runs.values()))


_stores: "weakref.WeakKeyDictionary[torch.nn.Module, CacheStore]" = weakref.WeakKeyDictionary()
_stores_lock = threading.Lock()


def shared_store(unet: torch.nn.Module) -> CacheStore:
    """The store of this U-Net, created on first use and dropped with the U-Net."""
    with _stores_lock:
        store = _stores.get(unet)
        if store is None:
            store = _stores[unet] = CacheStore()
        return store
