"""A real ComfyUI server in rotated rounds: KSampler without the node, with DeepCache at
interval 1, and with DeepCache at interval 3, branch 0 (the process's first DeepCache run
at that size is round 0's). One fresh server, its /free before every run, the order of the
variants rotated each round. Reads KSampler seconds from the server's execution events,
the node's measured report from the server log, and the run's FLOP ceiling from the
plugin's own /deepcache/costs route.

    ROOT=/tmp/comfy-accept bash ../shared/harness/comfy_server.sh --comfy-git GIT --plugin . --no-bench --keep-server
    /tmp/comfy-accept/venv/bin/python -m bench.server_rounds --driver ../shared/harness/driver.py \\
        --server-pid "$(cat /tmp/comfy-accept/server-8188.pid)" --server-log /tmp/comfy-accept/logs/server-8188.log
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import re
import statistics
import sys

from .comfy_speed import INTERVAL, run_ceiling
from .common import write_json

SIZE = 256  # the driver's workflow
NODE = {"cache_branch": 0, "start_percent": 0.0, "end_percent": 1.0, "schedule": "uniform"}
VARIANTS = {"baseline": None,
            "interval1": ("DeepCache", dict(NODE, cache_interval=1)),
            "interval3": ("DeepCache", dict(NODE, cache_interval=INTERVAL))}
REPORT = re.compile(r"DeepCache: \d+ full / \d+ cached steps.*")


def load_driver(path: str):
    spec = importlib.util.spec_from_file_location("comfy_driver", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def node_reports(log_path: str) -> list[str]:
    with open(log_path, errors="replace") as f:
        return [m.group(0) for m in map(REPORT.search, f) if m]


def paired(rows, a: str, b: str) -> list[float]:
    """a's seconds over b's, round by round."""
    by = {(r["round"], r["variant"]): r["ksampler_s"] for r in rows}
    return [by[(i, a)] / by[(i, b)] for i in sorted({r["round"] for r in rows})]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--driver", required=True, help="shared/harness/driver.py (its Comfy client)")
    ap.add_argument("--server", default="http://127.0.0.1:8188")
    ap.add_argument("--server-pid", type=int)
    ap.add_argument("--server-log", help="the server's log, for the node's own reports")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--quiet-wait", type=float, default=120, help="wait up to this long for other load to stop")
    ap.add_argument("--out", default="comfyui_server.json")
    a = ap.parse_args(argv)
    driver = load_driver(a.driver)
    comfy = driver.Comfy(a.server, a.server_pid, a.quiet_wait)
    names, rows = list(VARIANTS), []
    for rnd in range(a.rounds):
        for name in names[rnd % len(names):] + names[:rnd % len(names)]:
            wf = driver.base_workflow("random_sd15.safetensors", "euler", a.steps, 42, size=SIZE,
                                      prefix=f"{name}_r{rnd}")
            if VARIANTS[name]:
                wf = driver.with_patch(wf, *VARIANTS[name])
            r = comfy.run(wf)
            if not r["ok"]:
                raise SystemExit(f"{name} round {rnd} failed: {r['error']}")
            stats = driver.sampler_stats(r)
            rows.append({"round": rnd, "variant": name, "ksampler_s": stats["ksampler_s"],
                         "ksampler_cpu_s": stats["ksampler_cpu_s"], "busy_before": r["busy_before"]})
            print(json.dumps(rows[-1]), flush=True)
    costs = comfy.get_json(f"/deepcache/costs?arch=sd15&width={SIZE}&height={SIZE}")["archs"]["sd15"]
    fraction = costs["branches"][0]["cached_fraction"]
    first, *later = [r["ksampler_s"] for r in rows if r["variant"] == "interval3"]
    summary = {
        "median_s": {n: statistics.median(r["ksampler_s"] for r in rows if r["variant"] == n) for n in names},
        "interval3_first_run_s": first,
        "first_over_later_median": first / statistics.median(later) if later else None,
        "interval1_over_baseline_paired": paired(rows, "interval1", "baseline"),
        "speedup_paired": paired(rows, "baseline", "interval3"),
        "flop_cached_fraction_b0": fraction,
        "flop_ceiling_of_run": run_ceiling(a.steps, fraction),
        "node_reports": node_reports(a.server_log)[-a.rounds:] if a.server_log else [],
    }
    summary["interval1_over_baseline_median"] = statistics.median(summary["interval1_over_baseline_paired"])
    summary["speedup_median"] = statistics.median(summary["speedup_paired"])
    out = {"what": f"a real ComfyUI server, random SD1.5 checkpoint, KSampler {SIZE} px, {a.steps} euler steps, "
                   "cfg 7, seed 42; variants rotated each round", "rows": rows, "summary": summary,
           "command": "python3 -m bench.server_rounds " + " ".join(sys.argv[1:] if argv is None else argv)}
    print(json.dumps(summary, indent=1))
    print("wrote", write_json(a.out, out))


if __name__ == "__main__":
    main()
