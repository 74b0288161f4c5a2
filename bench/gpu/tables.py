"""The Markdown tables of a results dict, and its first DeepCache run."""
from __future__ import annotations

from typing import Optional


def _f(v, fmt, prefix=""):
    return "–" if v is None else prefix + format(v, fmt)


def table(results: dict) -> str:
    lines = ["| model | mode | variant | ms/step | U-Net ms/call full / cached | speed-up | vs eager baseline "
             "| FLOP ceiling | efficiency | peak GiB |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in results.get("models", {}).items():
        for mode, r in m.get("modes", {}).items():
            for key, v in r.get("variants", {}).items():
                label = v["label"] + (" (DeepCache off)" if v.get("disabled") else "")
                calls = _f(v["full_ms_per_call"], ".1f") + " / " + _f(v["cached_ms_per_call"], ".1f")
                lines.append(f"| {m['short']} | {mode} | {label} | {_f(v['ms_per_step'], '.1f')} | {calls} | "
                             f"{_f(v['speedup'], '.2f', '×')} | {_f(v['speedup_vs_eager_baseline'], '.2f', '×')} | "
                             f"{_f(v['ceiling'], '.2f', '×')} | {_f(v['efficiency'], '.2f')} | "
                             f"{_f(v['peak_gib'], '.2f')} |")
    return "\n".join(lines)


def first_run_table(results: dict) -> str:
    lines = ["| model | mode | variant | first run s | later runs s | first calls (compile / capture) |",
             "|---|---|---|---:|---:|---|"]
    for name, m in results.get("models", {}).items():
        for mode, r in m.get("modes", {}).items():
            stats = r.get("first_calls", {})
            for key, v in r.get("variants", {}).items():
                calls = ", ".join(f"{g} {stats[g]['seconds']:.1f} s" for g in v["first_graphs"] if g in stats)
                lines.append(f"| {m['short']} | {mode} | {v['label']} | {v['first_run_s']:.2f} | "
                             f"{_f(v['later_run_wall_s'], '.2f')} | {calls or '–'} |")
    return "\n".join(lines)


def first_deepcache_run(results: dict) -> Optional[dict]:
    """The process's first DeepCache run (the first model's first mode: eager unless --modes says otherwise)
    and, per mode, the first DeepCache run of the first model, with the later runs of the same variant."""
    out = {}
    for name, m in results.get("models", {}).items():
        for mode, r in m.get("modes", {}).items():
            v = next((v for v in r.get("variants", {}).values() if v["interval"] > 1), None)
            if v is not None and mode not in out:
                out[mode] = dict(model=name, variant=v["label"], first_run_s=v["first_run_s"],
                                 later_run_s=v["later_run_wall_s"], first_calls_s=v["first_call_s"],
                                 first_graphs=v["first_graphs"])
    if not out:
        return None
    return dict(process=next(iter(out.values())), per_mode=out)
