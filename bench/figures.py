"""PNG figures of the benchmarks (matplotlib, Agg backend)."""
from __future__ import annotations

import os

BRANCH_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _pareto(points):
    """Upper-right frontier of (speed, quality) points."""
    best, front = float("-inf"), []
    for x, y in sorted(points, key=lambda p: (-p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return sorted(front)


def frontier_png(result: dict, path: str) -> str:
    plt = _plt()
    rows = result["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    markers = {("uniform", False): ("o", "uniform"), ("non-uniform", False): ("^", "non-uniform (c=0.3, p=1.4)"),
               ("non-uniform", True): ("s", "non-uniform, tuned (c, p)")}
    for ax, key, ylabel in ((axes[0], "psnr", "PSNR vs full U-Net (dB)"),
                            (axes[1], "accuracy", "classifier accuracy (requested digit)")):
        seen = set()
        for r in rows:
            m, name = markers[(r["schedule"], bool(r.get("tuned")))]
            label = None
            if (m, r["branch"]) not in seen:
                seen.add((m, r["branch"]))
                label = f"b={r['branch']}, {name}"
            ax.scatter(r["flop_speedup"], r[key], marker=m, s=42, color=BRANCH_COLORS[r["branch"] % 6],
                       edgecolors="black", linewidths=0.4, label=label, alpha=0.9)
            ax.annotate(f"N{r['interval']}", (r["flop_speedup"], r[key]), fontsize=6,
                        xytext=(3, 2), textcoords="offset points")
        if key == "psnr":
            front = _pareto([(r["flop_speedup"], r["psnr"]) for r in rows])
            ax.plot([p[0] for p in front], [p[1] for p in front], "k--", lw=0.8, label="frontier")
        else:
            ax.axhline(result["baseline"]["accuracy"], color="gray", lw=0.8, ls=":", label="full U-Net")
            ax.axhline(0.8, color="red", lw=0.6, ls=":", label="80 %")
        ax.set_xlabel("U-Net speed-up (FLOPs per run; x1 = full U-Net every step)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6.5, ncol=2, loc="upper right")
    axes[1].legend(fontsize=6.5, ncol=2, loc="lower left")
    fig.suptitle(f"DeepCache on the demo U-Net: DDIM-{result['steps']}, {result['samples']} samples "
                 f"(python3 -m bench.quality)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def schedules_png(result: dict, path: str) -> str:
    """Which steps are refresh (full) and which cached, for the schedules of the table."""
    plt = _plt()
    from matplotlib.patches import Patch
    rows = result["rows"]
    want = []
    for n in (3, 5, 10):
        for r in rows:
            if r["interval"] == n and r["branch"] == 0:
                tag = "uniform" if r["schedule"] == "uniform" else (
                    f"non-uniform c={r['center']:.1f} p={r['power']:.1f}" + (" (tuned)" if r.get("tuned") else ""))
                want.append((f"N={n} {tag}", r["plan"], r))
    fig, ax = plt.subplots(figsize=(12, 0.42 * len(want) + 1.2))
    for y, (label, plan, r) in enumerate(want):
        for i, ch in enumerate(plan):
            color = "#d62728" if ch == "F" else ("#c7dcef" if ch == "." else "#eeeeee")
            ax.add_patch(plt.Rectangle((i, y - 0.4), 0.92, 0.8, color=color))
        ax.text(len(plan) + 0.5, y, f"{plan.count('F')} full, PSNR(b0) {r['psnr']:.1f} dB", va="center", fontsize=7)
    ax.set_yticks(range(len(want)))
    ax.set_yticklabels([w[0] for w in want], fontsize=7)
    ax.set_xlim(0, result["steps"] + 12)
    ax.set_ylim(len(want) - 0.5, -0.5)
    ax.set_xlabel(f"sampler step (DDIM-{result['steps']}, step 0 = most noise)")
    ax.legend(handles=[Patch(color="#d62728", label="refresh step (whole U-Net)"),
                       Patch(color="#c7dcef", label="cached step (shallow branch)")],
              loc="upper center", bbox_to_anchor=(0.4, 1.0 + 0.9 / len(want)), ncol=2, fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def quality_figures(result: dict, folder: str) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    return [frontier_png(result, os.path.join(folder, "frontier.png")),
            schedules_png(result, os.path.join(folder, "schedules.png"))]
