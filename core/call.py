"""The one per-call path every host adapter takes for a U-Net call.

decide the mode -> the host's own forward, DeepCache's full forward that stores the
deep feature, or the shallow branch on the stored one -> time it. On an unexpected
error DeepCache turns itself off for the rest of the run, says so once, and the host's
forward answers the call.

The bookkeeping (open_call, Call.store, close_call, turn_off) is plain Python on host
values and never traced by torch.compile: a compiled U-Net sees only tensors and a few
constants (mode, depth, branch), the same in every run, so it compiles each path once.
"""
from __future__ import annotations

import logging
from typing import Callable, Hashable, Optional, Sequence

import torch

from .run import Mode, RunState

log = logging.getLogger("DeepCache")


class Call:
    """One U-Net call of a run: its mode and what the forward needs for it."""

    def __init__(self, run: Optional[RunState], keys, mode: Mode, x: torch.Tensor):
        self.run, self.keys, self.mode = run, keys, mode
        self.depth = run.depth if run is not None else 0
        self.branch = run.config.branch if run is not None else 0
        self.step = run.step if run is not None else 0
        self.deep = run.cache.read(keys) if mode is Mode.CACHED else None
        self.stored = False
        self._shape = tuple(x.shape)
        self._span = run.times.start(x) if run is not None else None

    @torch.compiler.disable
    def store(self, deep: torch.Tensor) -> None:
        """The deep feature of a full call (written in place into the run's buffer)."""
        self.run.cache.write(self.keys, deep, self.step)
        self.stored = True


@torch.compiler.disable
def open_call(run: Optional[RunState], keys: Optional[Sequence[Hashable]], x: torch.Tensor) -> Call:
    """run None: no DeepCache run; keys None: a call DeepCache must not touch."""
    mode = Mode.PASSTHROUGH if run is None or keys is None else run.decide(keys)
    return Call(run, keys, mode, x)


@torch.compiler.disable
def turn_off(call: Call, reason: str) -> None:
    """Off for the rest of the run, said once; the host's forward answers from now on."""
    first = call.run.disabled_reason is None
    call.run.disable(reason)
    if first:
        log.warning("DeepCache: %s; the normal U-Net runs for the rest of this run", reason)


@torch.compiler.disable
def close_call(call: Call, deep: Optional[torch.Tensor] = None) -> None:
    if call._span is None:
        return
    if deep is not None:
        call.store(deep)
    call.run.times.stop(call._span, call.mode is Mode.CACHED, call._shape)
    if call.mode is Mode.FULL and not call.stored:
        turn_off(call, "the U-Net forward in use never reached the cached branch")


def call_unet(open: Callable[[], Call], host: Callable[[], torch.Tensor],
              forward: Callable[[Call], tuple], passthrough: tuple = ()) -> torch.Tensor:
    """One U-Net call: open() decides (usually open_call(run, keys, x)), host() is the
    host's own forward, forward(call) DeepCache's, returning (output, deep feature or None):
    the shallow branch on call.deep when it is set, else the whole U-Net, whose deep feature
    is stored (returned, or handed to call.store on the way). `passthrough`: exception
    types that are not failures (interrupts)."""
    try:
        call = open()
    except passthrough:
        raise
    except Exception as e:  # DeepCache's own bookkeeping failed: the host answers this call
        _say_once(f"{type(e).__name__}: {e}")
        return host()
    deep = None
    if call.mode is Mode.PASSTHROUGH:
        out = host()
    else:
        try:
            out, deep = forward(call)
        except passthrough:
            raise
        except Exception as e:  # the cache must never break the user's run
            turn_off(call, f"{type(e).__name__}: {e}")
            out = host()
    try:
        close_call(call, deep)
    except Exception as e:  # the output stands; the run goes on without DeepCache
        if call.run is not None:
            call.run.disable(f"{type(e).__name__}: {e}")
        _say_once(f"{type(e).__name__}: {e}")
    return out


_said: set = set()


def _say_once(reason: str) -> None:
    """A failure of the bookkeeping itself, where no run may be at hand to remember it."""
    if reason not in _said:
        _said.add(reason)
        log.warning("DeepCache: %s; the normal U-Net answers", reason)
