"""The DeepCache demo on the embedded digits U-Net (nothing to download).

    python3 -m demo                       # 10 samples of each digit, DDIM 50 steps
    python3 -m demo --interval 5 --branch 1 --schedule non-uniform --out my.png

Samples the same noise and labels twice, with the full U-Net every step and with
DeepCache through the core (the code path the ComfyUI/A1111 adapters use), then
prints the wall-time ratio, full vs cached U-Net evaluations, PSNR against the
full-schedule images and the accuracy of a digit classifier for both, and writes
a side-by-side PNG.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch

from .data import DigitClassifier
from .model import IMAGE_SIZE, NULL_LABEL, NUM_CLASSES, ddim_sigmas, load_model, sigma_to_t
from .sampling import DeepCacheConfig, cost_fractions, plan_string, psnr, sample_euler

DEFAULT_GUIDANCE = 1.0


def make_inputs(per_class: int, seed: int):
    labels = torch.arange(NUM_CLASSES).repeat_interleave(per_class)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(len(labels), 1, IMAGE_SIZE, IMAGE_SIZE, generator=gen)
    return noise, labels


def grid_image(images: torch.Tensor, per_class: int, scale: int = 3):
    """(n, 1, 16, 16) in [-1, 1], rows = digits -> a PIL image."""
    from PIL import Image
    x = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[:, 0]
    rows = x.reshape(NUM_CLASSES, per_class, IMAGE_SIZE, IMAGE_SIZE)
    pad = 2
    s = IMAGE_SIZE * scale
    canvas = Image.new("L", (per_class * (s + pad) + pad, NUM_CLASSES * (s + pad) + pad), 40)
    for r in range(NUM_CLASSES):
        for c in range(per_class):
            tile = Image.fromarray(rows[r, c].numpy()).resize((s, s), Image.NEAREST)
            canvas.paste(tile, (pad + c * (s + pad), pad + r * (s + pad)))
    return canvas


def side_by_side(panels, titles, path: str) -> None:
    from PIL import Image, ImageDraw
    head = 34
    w = sum(p.width for p in panels) + 20 * (len(panels) + 1)
    h = max(p.height for p in panels) + head + 10
    out = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    x = 20
    for panel, title in zip(panels, titles):
        out.paste(panel.convert("RGB"), (x, head))
        for j, line in enumerate(title.split("\n")[:2]):
            draw.text((x, 4 + 14 * j), line, fill=(0, 0, 0))
        x += panel.width + 20
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    out.save(path)


def run_demo(per_class=10, steps=50, interval=3, branch=0, schedule="uniform", guidance=DEFAULT_GUIDANCE,
             seed=0, repeats=3, out="deepcache_demo.png", weights=None, quiet=False):
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    model = load_model(weights)
    config = DeepCacheConfig(interval=interval, branch=branch, schedule=schedule)
    sigmas = ddim_sigmas(steps)
    noise, labels = make_inputs(per_class, seed)
    batch = noise.shape[0] * (2 if guidance != 1.0 else 1)
    fractions = cost_fractions(model, torch.zeros(batch, 1, IMAGE_SIZE, IMAGE_SIZE), torch.zeros(batch),
                               y=torch.zeros(batch, dtype=torch.long))
    kw = dict(sigma_to_t=sigma_to_t, guidance=guidance, null_label=NULL_LABEL)

    # warm-up (allocator, kernels), then interleaved timed runs
    sample_euler(model, noise[:4], labels[:4], sigmas[-4:], **kw)
    sample_euler(model, noise[:4], labels[:4], sigmas[-4:], config=config, **kw)
    full_t, dc_t = [], []
    full = dc = None
    for r in range(max(repeats, 1)):
        a = sample_euler(model, noise, labels, sigmas, **kw)
        b = sample_euler(model, noise, labels, sigmas, config=config, cost_fraction=fractions[branch], **kw)
        full_t.append(a.seconds)
        dc_t.append(b.seconds)
        full, dc = full or a, dc or b
    t_full, t_dc = statistics.median(full_t), statistics.median(dc_t)
    ratio = statistics.median(a / b for a, b in zip(full_t, dc_t))  # paired rounds: load cancels

    clf = DigitClassifier()
    acc_full = clf.accuracy(full.images, labels)
    acc_dc = clf.accuracy(dc.images, labels)
    quality = psnr(dc.images, full.images)
    s = dc.summary
    result = dict(
        samples=len(labels), steps=steps, guidance=guidance, config=config.__dict__,
        seconds_full=t_full, seconds_deepcache=t_dc, wall_time_ratio=ratio,
        flop_speedup=dc.flop_speedup, full_evals=s.full_calls, cached_evals=s.cached_calls,
        full_steps=s.full_steps, cached_steps=s.cached_steps, plan=plan_string(dc.plan),
        psnr_db=quality, accuracy_full=acc_full, accuracy_deepcache=acc_dc,
        classifier_held_out_accuracy=clf.held_out_accuracy, out=out, repeats=len(full_t),
        seconds_full_all=full_t, seconds_deepcache_all=dc_t)

    say(f"Demo U-Net: class-conditional openaimodel U-Net, 16x16 digits, DDIM (Euler) {steps} steps, "
        f"{len(labels)} samples ({per_class} per digit), seed {seed}"
        + (f", CFG {guidance}" if guidance != 1.0 else ""))
    say(f"DeepCache: interval {interval}, branch {branch}, {schedule}; plan {result['plan']}")
    say(f"  full U-Net : {t_full:6.2f} s  ({steps * (2 if guidance != 1.0 else 1)} batch evaluations, all full)"
        .replace(" batch evaluations", " U-Net evaluations"))
    say(f"  DeepCache  : {t_dc:6.2f} s  ({s.full_calls} full + {s.cached_calls} cached U-Net evaluations)")
    say(f"  wall-time ratio x{result['wall_time_ratio']:.2f} (median of {len(full_t)} paired, interleaved runs; "
        f"FLOP ceiling x{dc.flop_speedup:.2f}; U-Net x{s.speedup:.2f} measured)")
    say(f"  PSNR vs full schedule: {quality:.2f} dB")
    say(f"  classifier accuracy (requested digit): full {acc_full:.1%}, DeepCache {acc_dc:.1%} "
        f"(classifier on held-out real digits: {clf.held_out_accuracy:.1%})")
    if out:
        side_by_side([grid_image(full.images, per_class), grid_image(dc.images, per_class)],
                     [f"full U-Net, {steps} steps\n{t_full:.2f} s, accuracy {acc_full:.0%}",
                      f"DeepCache N={interval} b={branch} {schedule}\n{t_dc:.2f} s (x{result['wall_time_ratio']:.2f}), "
                      f"{quality:.1f} dB, accuracy {acc_dc:.0%}"], out)
        say(f"  wrote {out}  (rows: digits 0-9; left full U-Net, right DeepCache)")
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--interval", type=int, default=DeepCacheConfig.interval)
    ap.add_argument("--branch", type=int, default=DeepCacheConfig.branch)
    ap.add_argument("--schedule", default=DeepCacheConfig.schedule, choices=["uniform", "non-uniform"])
    ap.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE, help="classifier-free guidance scale (1 = off)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each (median)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--weights", default=None, help="a safetensors file (default: the shipped weights)")
    ap.add_argument("--out", default="deepcache_demo.png")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file (bench/results/demo.json)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run_demo(args.per_class, args.steps, args.interval, args.branch, args.schedule, args.guidance,
                      args.seed, args.repeats, args.out, args.weights)
    if args.json:
        import json

        from ._repo import sibling
        machine = sibling("bench.common").machine
        result.update(machine=machine(), command=sibling("bench.common").command_line("demo", argv))
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=str)
        print(f"  wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
