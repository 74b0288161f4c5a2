"""python3 -m bench.gpu: the command (bench/gpu/cli.py)."""
import os
import sys

from .cli import main

if __name__ == "__main__":
    main()
    sys.stdout.flush()
    sys.stderr.flush()
    # inductor's compile workers may still run after a budget stop: end without waiting for them
    os._exit(0)
