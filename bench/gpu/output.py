"""The results file: the machine it ran on, NaN-safe JSON, the tables, written atomically."""
from __future__ import annotations

import json
import math
import os
import subprocess

import torch

from ..common import machine
from .tables import first_run_table, table

GIB = 2.0 ** 30


def gpu_machine(device) -> dict:
    m = machine()
    m.update(device=str(device), cuda=torch.version.cuda,
             cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
    try:
        import triton
        m["triton"] = triton.__version__
    except Exception:
        m["triton"] = None
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        m.update(gpu=p.name, gpu_memory_gib=p.total_memory / GIB, sm_count=p.multi_processor_count,
                 capability=f"{p.major}.{p.minor}")
        try:
            q = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,power.limit",
                                "--format=csv,noheader"], capture_output=True, text=True, timeout=15)
            m["nvidia_smi"] = q.stdout.strip() or None
        except Exception:
            m["nvidia_smi"] = None
    return m


def write(path: str, results: dict) -> None:
    results["table_md"] = table(results)
    results["first_run_table_md"] = first_run_table(results)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1, default=str, allow_nan=False)
    os.replace(tmp, path)


def clean(obj):
    """NaN/inf (never expected) as strings, so the JSON stays valid and says so."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(obj)
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    return obj
