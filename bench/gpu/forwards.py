"""The U-Net functions of one model in one mode: eager, torch.compile'd (first call timed apart), or replayed
as CUDA graphs."""
from __future__ import annotations

import time
from typing import Callable, Optional

import torch

from ..common import sibling
from .model import Setup

_core = sibling("core")
LdmOps, unet_forward = _core.LdmOps, _core.unet_forward

MODES = ("eager", "compiled", "graphs")


def _full(unet, x, t, ctx, y, depth: int, branch: int):
    """The whole U-Net: (output, deep feature of branch b)."""
    return unet_forward(LdmOps(unet, t, ctx, y), x, depth, branch)


def _shallow(unet, x, t, ctx, y, deep, depth: int, branch: int):
    """The shallow branch b on a stored deep feature: the output."""
    ops = LdmOps(unet, t, ctx, y)
    return unet_forward(ops, x, depth, branch, deep=deep)[0]


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _dynamo_counts():
    try:
        from torch._dynamo.utils import counters
        return counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())
    except Exception:  # private counters: absent in some torch version
        return None, None


class FirstCallTimed:
    """A compiled function whose first call (compilation + one run) is timed apart, with the graphs
    dynamo made and the graph breaks it hit on the way."""

    def __init__(self, name: str, fn: Callable, stats: dict, device):
        self.name, self.fn, self.stats, self.device = name, fn, stats, device
        self.done = False
        self.error = None

    def __call__(self, *args):
        if self.done:
            return self.fn(*args)
        if self.error is not None:
            raise RuntimeError(f"{self.name} did not compile: {self.error}")
        sync(self.device)
        g0, b0 = _dynamo_counts()
        t0 = time.perf_counter()
        try:
            out = self.fn(*args)
            sync(self.device)
        except Exception as e:
            self.error = f"{type(e).__name__}: {e}"[:500]
            self.stats[self.name] = dict(kind="compile", seconds=time.perf_counter() - t0, error=self.error)
            raise
        g1, b1 = _dynamo_counts()
        self.stats[self.name] = dict(kind="compile", seconds=time.perf_counter() - t0,
                                     graphs=None if g0 is None else g1 - g0,
                                     graph_breaks=None if b0 is None else b1 - b0)
        self.done = True
        return out


class Graphed:
    """fn as one CUDA graph: captured on the first call (after a warm-up on a side stream) with static
    copies of that call's inputs; every call copies its inputs in and replays. The outputs are the graph's
    own buffers, overwritten by the next replay (the sampler and RunCache.write copy them at once)."""

    def __init__(self, name: str, fn: Callable, stats: dict):
        self.name, self.fn, self.stats = name, fn, stats
        self.graph = self.static = self.out = None

    def __call__(self, *args):
        if self.graph is None:
            self._capture(args)
        for dst, src in zip(self.static, args):
            dst.copy_(src)
        self.graph.replay()
        return self.out

    def _capture(self, args):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        self.static = [a.clone() for a in args]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self.fn(*self.static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.out = self.fn(*self.static)
        torch.cuda.synchronize()
        self.graph = graph
        self.stats[self.name] = dict(kind="capture", seconds=time.perf_counter() - t0)


class Forwards:
    """The U-Net functions of one model in one mode, made on first use, by name:
    "plain" (x, t) -> out; "full-b<b>" (x, t) -> (out, deep); "shallow-b<b>" (x, t, deep) -> out."""

    def __init__(self, s: Setup, mode: str, device, backend: str = "inductor", base: Optional["Forwards"] = None):
        self.s, self.mode, self.device, self.backend, self.base = s, mode, device, backend, base
        self.fns: dict = {}
        self.stats: dict = {}  # name -> first call (compile or capture)

    def get(self, name: str) -> Callable:
        fn = self.fns.get(name)
        if fn is None:
            fn = self.fns[name] = self._make(name)
        return fn

    def new(self, names) -> list:
        """Those of names whose first call is still to come."""
        return [n for n in names if n not in self.stats]

    def _make(self, name: str) -> Callable:
        s, u = self.s, self.s.unet
        kind, _, b = name.partition("-b")
        branch = int(b) if b else 0
        if self.mode == "graphs":
            return Graphed(name, self.base.get(name), self.stats)
        if self.mode == "eager":
            if kind == "plain":
                return lambda x, t: u(x, t, s.ctx, s.y)
            if kind == "full":
                return lambda x, t: _full(u, x, t, s.ctx, s.y, s.depth, branch)
            return lambda x, t, deep: _shallow(u, x, t, s.ctx, s.y, deep, s.depth, branch)
        compile_ = lambda fn: torch.compile(fn, backend=self.backend, dynamic=False)
        if kind == "plain":
            c = compile_(u)
            fn = lambda x, t: c(x, t, s.ctx, s.y)
        elif kind == "full":
            c = compile_(_full)
            fn = lambda x, t: c(u, x, t, s.ctx, s.y, s.depth, branch)
        else:
            c = compile_(_shallow)
            fn = lambda x, t, deep: c(u, x, t, s.ctx, s.y, deep, s.depth, branch)
        return FirstCallTimed(name, fn, self.stats, self.device)
