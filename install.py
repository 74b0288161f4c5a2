"""Run by A1111/Forge at every launch and by ComfyUI-Manager on install.

Checks that what DeepCache imports is importable and pip-installs only what is
missing, by name from the package registry. torch is never installed here: it
belongs to the host, and a pip-installed torch would replace the host's CUDA build.
Prints nothing and starts no subprocess when everything is present.
"""
import importlib.util
import subprocess
import sys

# import name -> registry name of what core/ and the adapters import besides torch
REQUIRED = {"numpy": "numpy"}


def missing(required):
    return [pip_name for module, pip_name in required.items() if importlib.util.find_spec(module) is None]


def main() -> int:
    if importlib.util.find_spec("torch") is None:
        print("[DeepCache] torch is not importable; install your UI's own torch build first (not installed here).")
        return 1
    todo = missing(REQUIRED)
    if not todo:
        return 0
    print(f"[DeepCache] installing missing packages: {', '.join(todo)}")
    return subprocess.call([sys.executable, "-m", "pip", "install", *todo])


if __name__ == "__main__":
    sys.exit(main())
