"""Shared bench helpers: machine description, interleaved timing, result files."""
from __future__ import annotations

import datetime
import importlib
import json
import math
import os
import platform
import statistics
import sys
import time
from typing import Callable, Sequence

import torch

_BASE = __package__.rpartition(".")[0]


def sibling(name: str):
    """core/demo, whether bench is the top-level package (python3 -m bench.speed from the
    repository root) or inside the repository's package (deepcache_plugin.bench, the tests)."""
    return importlib.import_module(f"{_BASE}.{name}" if _BASE else name)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
FIGURES = os.path.join(ROOT, "docs", "figures")


@torch.no_grad()
def fill_random(module: torch.nn.Module, seed: int = 0) -> None:
    """Fan-in scaled random weights, unit norms, zero biases: ComfyUI's layers skip
    weight init, and a random U-Net needs a trained net's scale to stay finite.
    Drawn on the parameters' own device, one generator per device (SDXL has 2.6e9 of them)."""
    gens = {}
    for name, p in module.named_parameters():
        if p.ndim >= 2:
            gen = gens.get(p.device)
            if gen is None:
                gen = gens[p.device] = torch.Generator(device=p.device).manual_seed(seed)
            p.copy_(torch.randn(p.shape, generator=gen, device=p.device) / math.sqrt(math.prod(p.shape[1:])))
        elif name.endswith("weight"):
            p.fill_(1.0)
        else:
            p.zero_()


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    mhz = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("cpu MHz") and mhz is None:
                    mhz = float(line.split(":", 1)[1])
    except OSError:
        pass
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return dict(cpu=cpu, cpu_mhz=mhz, cores=os.cpu_count(), torch_threads=torch.get_num_threads(),
                torch=torch.__version__, python=platform.python_version(), os=platform.platform(),
                load_avg_1min_at_start=load,
                date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


def machine_line(m: dict) -> str:
    mhz = f" at {m['cpu_mhz'] / 1000:.2f} GHz" if m.get("cpu_mhz") else ""
    return (f"{m['cpu']}{mhz}, {m['cores']} cores ({m['torch_threads']} torch threads), torch {m['torch']}, "
            f"Python {m['python']}, {m['date']}")


def interleaved_times(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each fn, called in turns (rotating the order each round) so that
    load from other processes hits all of them alike."""
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    times = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            t0 = time.perf_counter()
            fns[n]()
            times[n].append(time.perf_counter() - t0)
    return times


def median_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """Median of per-round ratios (paired, so slow rounds cancel)."""
    return statistics.median(a / b for a, b in zip(num, den))


def command_line(module: str, argv) -> str:
    args = argv if argv is not None else sys.argv[1:]
    return " ".join(["python3 -m", module] + list(args))


def write_json(name: str, data: dict, allow_nan: bool = True) -> str:
    """data as JSON at name (under bench/results unless absolute), written atomically (a temporary file
    beside it, then os.replace): a reader never sees half a file. Returns the path."""
    path = os.path.join(RESULTS, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, default=str, allow_nan=allow_nan)
    os.replace(tmp, path)
    return path


def read_json(name: str):
    path = os.path.join(RESULTS, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)
