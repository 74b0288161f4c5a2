"""docs/benchmarks.md from bench/results/*.json (no number in it is typed by hand).

    python3 -m bench.report      # also run at the end of bench.speed and bench.quality
"""
from __future__ import annotations

import os

from .common import ROOT, machine_line, read_json

DOC = os.path.join(ROOT, "docs", "benchmarks.md")
HEADLINE = ("sd15-64", "0", "3")


def _speed_section(speed: dict) -> list[str]:
    out = ["## Speed: full-size U-Nets, random weights (`bench/speed`)", "",
           f"Command: `{speed['command'].strip()}`  ", f"Machine: {machine_line(speed['machine'])}", "",
           "Per-step cost on this CPU, fp32, batch 1, measured in one process after a warm-up with all calls "
           "interleaved round by round (median of per-round ratios). F: the U-Net's own forward; R: a refresh "
           "step (core forward over the whole U-Net, storing the deep feature); S/F: a cached step of branch b. "
           "Measured speed-up of interval N = N·F / (R + (N−1)·S); ceiling = N / (1 + (N−1)·s) with s the FLOP "
           "ratio of a cached step (torch FlopCounterMode, attention matmuls included); efficiency = measured / "
           "ceiling. Overhead at interval 1: a DeepCache-patched call that does not cache (RunState decision, "
           "then the U-Net's own forward) next to the plain forward; the decision itself costs microseconds, so "
           "values of either sign within about 1 % are timing noise on this shared machine.", ""]
    for name, m in speed["models"].items():
        med = m["seconds_median"]
        out += [f"### {m['label']}", "",
                f"{m['full_gmacs']:.1f} GMACs per full step (attention included), {m['params_m']:.0f} M parameters, "
                f"full step {med['F']:.2f} s (median of {m['repeats']} rounds); refresh step R/F = "
                f"{m['refresh_over_full']:.4f} ({100 * m['overhead_refresh']:+.2f} %); "
                f"**overhead at interval 1: {100 * m['overhead_interval1']:+.2f} %**.", "",
                "| b | S/F measured | S/F FLOPs | " + " | ".join(
                    f"N={n} measured / ceiling (eff.)" for n in next(iter(m["branches"].values()))["intervals"]) + " |",
                "|---|---|---|" + "---|" * len(next(iter(m["branches"].values()))["intervals"])]
        for b, row in m["branches"].items():
            cells = [f"×{r['measured']:.2f} / ×{r['ceiling']:.2f} ({r['efficiency']:.3f})"
                     for r in row["intervals"].values()]
            out.append(f"| {b} | {row['cached_over_full_measured']:.4f} | {row['cached_over_full_flops']:.4f} | "
                       + " | ".join(cells) + " |")
        out.append("")
    if speed.get("comfyui"):
        c = speed["comfyui"]
        out += ["### Through ComfyUI's own UNetModel and the DeepCache node (`COMFYUI_PATH` set)", "",
                f"Command: `{c.get('command', '')}`  ",
                f"Machine: {machine_line(c['machine'])}" if c.get("machine") else "", ""]
        for line in c.get("lines", []):
            out.append(line)
        out.append("")
    return out


def _quality_section(q: dict) -> list[str]:
    base = q["baseline"]
    out = ["## Quality: the demo model (`bench/quality`)", "",
           f"Command: `{q['command'].strip()}`  ", f"Machine: {machine_line(q['machine'])}", "",
           f"{q['samples']} samples (equal numbers of each digit), DDIM-{q['steps']} (Euler over the model's sigmas)"
           + (f", classifier-free guidance {q['guidance']}" if q["guidance"] != 1.0 else "")
           + f", the same noise for every row. PSNR: mean per-image PSNR against the full-U-Net images "
           f"(pixel range [−1, 1]). Accuracy: share of samples an SVM trained on the real 8×8 digits assigns to the "
           f"requested digit (the SVM scores {q['classifier_held_out_accuracy']:.1%} on held-out real digits). "
           f"Speed-up: the run's U-Net FLOPs (full and cached evaluations weighted by their FLOP cost) next to the "
           f"full U-Net's; the wall-time ratio on this tiny model is in bench/results/quality.json.", "",
           f"Full U-Net every step: accuracy **{base['accuracy']:.1%}**.", "",
           "![speed/quality frontier](figures/frontier.png)", "",
           "![schedules](figures/schedules.png)", ""]
    rows = q["rows"]
    tuned = {int(k): v for k, v in (q.get("tuned") or {}).items()}
    hdr = "| N | b | uniform: PSNR, acc., speed-up | non-uniform (c=0.3, p=1.4): PSNR, acc., speed-up |"
    sep = "|---|---|---|---|"
    if tuned:
        hdr += " non-uniform, tuned (c, p): PSNR, acc. |"
        sep += "---|"
    out += [hdr, sep]
    key = lambda r: (r["interval"], r["branch"])
    by = {}
    for r in rows:
        kind = "u" if r["schedule"] == "uniform" else ("t" if r.get("tuned") else "n")
        by[(key(r), kind)] = r
    for k in sorted({key(r) for r in rows}):
        u, n, t = by.get((k, "u")), by.get((k, "n")), by.get((k, "t"))
        cell = lambda r: f"{r['psnr']:.2f} dB, {r['accuracy']:.0%}, ×{r['flop_speedup']:.2f}" if r else "–"
        line = f"| {k[0]} | {k[1]} | {cell(u)} | {cell(n)} |"
        if tuned:
            line += (f" {t['psnr']:.2f} dB, {t['accuracy']:.0%} (c={t['center']}, p={t['power']}) |" if t else " – |")
        out.append(line)
    out.append("")
    # the paper's finding, checked
    out += ["Non-uniform vs uniform (PSNR, same N and b):", ""]
    diffs = []
    for nn in (5, 10):
        cmp = []
        for b in sorted({r["branch"] for r in rows}):
            u, n, t = by.get(((nn, b), "u")), by.get(((nn, b), "n")), by.get(((nn, b), "t"))
            if u and n:
                diffs.append(n["psnr"] - u["psnr"])
                s = f"b={b}: {n['psnr'] - u['psnr']:+.2f} dB"
                if t:
                    s += f" (tuned {t['psnr'] - u['psnr']:+.2f} dB)"
                cmp.append(s)
        if cmp:
            out.append(f"- N={nn}: " + "; ".join(cmp))
    if tuned:
        out.append(f"- tuned (c, p) found on seed {q['tune_seed']}, evaluated on seed {q['seed']}: "
                   + ", ".join(f"N={k}: c={v[0]}, p={v[1]}" for k, v in sorted(tuned.items())))
    if diffs:
        worse = sum(1 for x in diffs if x < 0)
        out.append(
            f"- The paper's finding (non-uniform at least as good as uniform at large N) holds here in "
            f"{len(diffs) - worse} of {len(diffs)} (N, b) pairs at N=5 and N=10"
            + (": on this model, with PSNR against the full schedule as the measure, the uniform schedule is "
               "better; the paper measured FID/CLIP on LDM and Stable Diffusion." if worse > len(diffs) / 2 else "."))
    out.append("")
    return out


def _demo_section(d: dict) -> list[str]:
    c = d["config"]
    return ["## Demo (`python3 -m demo`)", "",
            f"Command: `{d['command'].strip()}`  ", f"Machine: {machine_line(d['machine'])}", "",
            f"![demo](figures/{os.path.basename(d['out'])})", "",
            f"{d['samples']} digits, DDIM-{d['steps']}; DeepCache at the default settings (interval {c['interval']}, "
            f"branch {c['branch']}, {c['schedule']}).", "",
            "| | full U-Net | DeepCache |", "|---|---|---|",
            f"| wall time (median of {d['repeats']} interleaved runs; ratio: median of paired ratios) "
            f"| {d['seconds_full']:.2f} s "
            f"| {d['seconds_deepcache']:.2f} s "
            f"(×{d['wall_time_ratio']:.2f}; FLOP ceiling ×{d['flop_speedup']:.2f}) |",
            f"| U-Net evaluations | {d['full_evals'] + d['cached_evals']} full | {d['full_evals']} full + "
            f"{d['cached_evals']} cached |",
            f"| PSNR vs full schedule | – | {d['psnr_db']:.2f} dB |",
            f"| classifier accuracy | {d['accuracy_full']:.1%} | {d['accuracy_deepcache']:.1%} |", ""]


def _summary(speed, q, d) -> list[str]:
    out = ["## Figures at a glance", "", "| figure | value | command |", "|---|---|---|"]
    if speed and HEADLINE[0] in speed["models"]:
        m = speed["models"][HEADLINE[0]]
        r = m["branches"][HEADLINE[1]]["intervals"][HEADLINE[2]]
        out.append(f"| SD1.5 64×64, b=0, N=3: measured / FLOP ceiling | ×{r['measured']:.2f} / ×{r['ceiling']:.2f} "
                   f"(efficiency {r['efficiency']:.3f}) | `python3 -m bench.speed` |")
        out.append(f"| SD1.5 64×64: overhead at interval 1 | {100 * m['overhead_interval1']:+.2f} % "
                   "| `python3 -m bench.speed` |")
    if speed:
        for name, m in speed["models"].items():
            if name.startswith("sdxl"):
                r = m["branches"]["0"]["intervals"]["3"]
                out.append(f"| {m['label']}, b=0, N=3 | ×{r['measured']:.2f} / ×{r['ceiling']:.2f} "
                           f"(efficiency {r['efficiency']:.3f}) | `python3 -m bench.speed` |")
    if speed and speed.get("comfyui"):
        r = speed["comfyui"]["runs"]
        out.append(f"| ComfyUI node on ComfyUI's UNetModel (SD1.5, {r['side']}×{r['side']} latent), "
                   f"whole KSampler-path runs, N=3, b=0 | ×{r['speedup']:.2f} / ×{r['ceiling']:.2f} "
                   f"(efficiency {r['efficiency']:.3f}) "
                   f"| `COMFYUI_PATH=... python3 -m bench.speed --comfy-only` |")
    if d:
        out.append(f"| demo, default settings: wall time, PSNR, accuracy full → DeepCache "
                   f"| ×{d['wall_time_ratio']:.2f}, {d['psnr_db']:.1f} dB, "
                   f"{d['accuracy_full']:.0%} → {d['accuracy_deepcache']:.0%} | `python3 -m demo` |")
    if q:
        rows = q["rows"]
        for nn in (5, 10):
            u = [r for r in rows if r["interval"] == nn and r["branch"] == 0 and r["schedule"] == "uniform"]
            n = [r for r in rows if r["interval"] == nn and r["branch"] == 0 and r["schedule"] == "non-uniform"
                 and not r.get("tuned")]
            if u and n:
                out.append(f"| demo model, N={nn}, b=0: PSNR uniform / non-uniform | {u[0]['psnr']:.2f} / "
                           f"{n[0]['psnr']:.2f} dB | `python3 -m bench.quality` |")
    out.append("")
    return out


def _readme_snippet(speed, q, d) -> list[str]:
    """Proposed README text for the figures section (paths relative to the repository root)."""
    body = ["## Speed and quality", ""]
    if d:
        body += [f"![DeepCache demo](docs/figures/{os.path.basename(d['out'])})", "",
                 f"`python3 -m demo` on {d['machine']['cpu']} ({d['machine']['cores']} cores, "
                 f"{d['machine']['torch_threads']} torch thread(s)): "
                 f"{d['samples']} digits from the embedded demo U-Net, DDIM-{d['steps']}, full U-Net (left) vs "
                 f"DeepCache at the default settings (right): ×{d['wall_time_ratio']:.2f} wall time, "
                 f"{d['full_evals']} full + {d['cached_evals']} cached U-Net evaluations, {d['psnr_db']:.1f} dB PSNR "
                 f"against the full schedule, classifier accuracy {d['accuracy_full']:.0%} → "
                 f"{d['accuracy_deepcache']:.0%}.", ""]
    if q:
        body += ["![speed/quality frontier](docs/figures/frontier.png)", "",
                 "![which steps are full and which cached](docs/figures/schedules.png)", "",
                 "`python3 -m bench.quality`: PSNR and classifier accuracy on the demo model against the FLOP "
                 "speed-up, for intervals N and branches b, uniform and non-uniform schedules.", ""]
    body += _summary(speed, q, d)[2:]
    body += ["Machine, method and every number: [docs/benchmarks.md](docs/benchmarks.md).", ""]
    return ["## README figures section (proposed text)", "", "````markdown"] + body + ["````", ""]


def render() -> str:
    speed, q, d = read_json("speed.json"), read_json("quality.json"), read_json("demo.json")
    out = ["# Benchmarks", "",
           "Generated by `python3 -m bench.report` from `bench/results/*.json`, which the commands below write; "
           "no number here is typed by hand. Re-run a command to refresh its section.", ""]
    out += _summary(speed, q, d)
    if d:
        out += _demo_section(d)
    if speed:
        out += _speed_section(speed)
    if q:
        out += _quality_section(q)
    out += _readme_snippet(speed, q, d)
    return "\n".join(out) + "\n"


def write(path: str = DOC) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(render())
    return path


if __name__ == "__main__":
    print(write())
