"""Console messages: A1111 and Forge show stdout in the console they run in."""
from __future__ import annotations

import sys
import traceback

PREFIX = "[DeepCache]"
_once: set = set()


def log(message: str) -> None:
    print(f"{PREFIX} {message}", file=sys.stdout, flush=True)


def log_once(key, message: str, exc: BaseException | None = None) -> None:
    """Log a problem the first time it happens in this process (not once per step)."""
    if key in _once:
        return
    _once.add(key)
    log(message)
    if exc is not None:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stdout)
