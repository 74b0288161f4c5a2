"""Load the repository as the package `deepcache_plugin`, the way a host loads it
under a name of its own (never as top-level `core`/`nodes`). Put tests/real_hosts, the helpers of
the suites that run a real web UI, on sys.path. Their UI tests save screenshots in `figures`."""
import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "deepcache_plugin"
sys.path.insert(0, str(ROOT / "tests" / "real_hosts"))


def load_plugin():
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACKAGE, ROOT / "__init__.py",
                                                      submodule_search_locations=[str(ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        spec.loader.exec_module(module)
    return sys.modules[PACKAGE]


load_plugin()


def pytest_configure(config):
    # tiny models: one intra-op thread is as fast, and far faster on a busy machine
    import torch
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def figures(tmp_path_factory) -> Path:
    """Where a UI test's screenshots go: DEEPCACHE_FIGURES, else a temporary folder of the test module."""
    d = Path(os.environ.get("DEEPCACHE_FIGURES") or tmp_path_factory.mktemp("figures"))
    d.mkdir(parents=True, exist_ok=True)
    return d
