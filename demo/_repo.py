"""Import a sibling package of demo/ (core, bench) both ways demo is loaded: as the
top-level package `demo` (python3 -m demo from the repository root) or inside the
repository's package (`deepcache_plugin.demo` in the tests, as hosts load it)."""
import importlib

_BASE = __package__.rpartition(".")[0]


def sibling(name: str):
    return importlib.import_module(f"{_BASE}.{name}" if _BASE else name)
