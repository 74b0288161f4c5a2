"""The results file: the machine it ran on, NaN-safe JSON, the tables, written atomically."""
from __future__ import annotations

import math
import os
import subprocess

import torch

from ..common import machine, write_json
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


def write(path: str, results: dict) -> dict:
    """results, cleaned and with their tables, written to path (relative: to the working directory);
    returns what was written. results itself is left as it is."""
    results = clean(results)
    results["table_md"] = table(results)
    results["first_run_table_md"] = first_run_table(results)
    write_json(os.path.abspath(path), results, allow_nan=False)
    return results


def clean(obj):
    """NaN/inf (never expected) as strings, so the JSON stays valid and says so."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(obj)
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    return obj
