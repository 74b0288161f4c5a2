"""AUTOMATIC1111 / Forge entry point of the DeepCache extension.

A1111 loads every file in scripts/ and registers the Script subclasses it finds.
The extension root is loaded as the package "sd_deepcache_ext" (its __init__.py,
the ComfyUI entry point, is not run), so core/ and a1111/ never shadow other
extensions' top-level modules.
"""
import importlib
import importlib.util
import sys
from pathlib import Path

PACKAGE = "sd_deepcache_ext"


def load_package():
    root = str(Path(__file__).resolve().parent.parent)
    pkg = sys.modules.get(PACKAGE)
    if pkg is None or list(getattr(pkg, "__path__", [])) != [root]:
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]  # another copy of the extension was loaded before
        spec = importlib.util.spec_from_loader(PACKAGE, loader=None, is_package=True)
        spec.submodule_search_locations = [root]
        pkg = importlib.util.module_from_spec(spec)
        pkg.__path__ = [root]
        sys.modules[PACKAGE] = pkg
    return importlib.import_module(PACKAGE + ".a1111.script")


_entry = load_package()
DeepCacheScript = _entry.DeepCacheScript
_entry.register_callbacks()
