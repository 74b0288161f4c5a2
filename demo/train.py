"""Train the demo U-Net on scikit-learn's digits and write demo/weights/digits_unet.safetensors.

    python3 -m demo.train            # ~8 min on one CPU core; reproduces the shipped weights
    python3 -m demo.train --iters 200 --out /tmp/quick.safetensors   # a quick check

Fixed seed, fixed iteration count, float32 training, EMA weights stored in float16.
Epsilon prediction on SD's scaled-linear schedule, uniform timesteps, labels dropped
10 % of the time (label 10) so classifier-free guidance is available.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import time

import torch

from .data import digits_to_images, load_digits_arrays
from .model import NULL_LABEL, NUM_TRAIN_TIMESTEPS, WEIGHTS_PATH, alphas_cumprod, build_model

DEFAULTS = dict(iters=2000, batch=64, lr=2e-3, warmup=100, ema=0.999, label_drop=0.1, seed=0)


def train(iters: int, batch: int, lr: float, warmup: int, ema: float, label_drop: float, seed: int,
          log_every: int = 250, save_every: int = 0, out: str = WEIGHTS_PATH):
    torch.manual_seed(seed)
    images8, labels = load_digits_arrays()
    data = digits_to_images(images8)
    labels = torch.from_numpy(labels)
    # the flip/shift-free digits are the whole data set; no augmentation
    model = build_model().train()
    ema_model = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (
        1 + math.cos(math.pi * min(i, iters) / iters)))
    ac = alphas_cumprod().float()
    gen = torch.Generator().manual_seed(seed)
    t0 = time.time()
    running = 0.0
    for it in range(iters):
        idx = torch.randint(0, len(data), (batch,), generator=gen)
        x0, y = data[idx], labels[idx].clone()
        y[torch.rand(batch, generator=gen) < label_drop] = NULL_LABEL
        t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (batch,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        a = ac[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        loss = (model(xt, t, None, y) - eps).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            d = min(ema, (1 + it) / (10 + it))
            for pe, pm in zip(ema_model.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - d)
        running += loss.item()
        if (it + 1) % log_every == 0:
            print(f"iter {it + 1}/{iters}  loss {running / log_every:.4f}  {time.time() - t0:.0f} s", flush=True)
            running = 0.0
        if save_every and (it + 1) % save_every == 0 and it + 1 < iters:
            save(ema_model, out + f".{it + 1}", {})
    seconds = time.time() - t0
    return ema_model, seconds


def save(model, path: str, meta: dict) -> None:
    from safetensors.torch import save_file
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, path, metadata={k: str(v) for k, v in meta.items()})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for k, v in DEFAULTS.items():
        ap.add_argument("--" + k.replace("_", "-"), type=type(v), default=v)
    ap.add_argument("--out", default=WEIGHTS_PATH)
    ap.add_argument("--save-every", type=int, default=0, help="also write EMA checkpoints to OUT.<iter>")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (the shipped weights: 1; also fastest on a busy 2-core machine)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    hp = {k: getattr(args, k) for k in DEFAULTS}
    model, seconds = train(**hp, save_every=args.save_every, out=args.out)
    meta = dict(hp, train_seconds=round(seconds, 1), torch=torch.__version__, threads=args.threads,
                machine=platform.processor() or platform.machine())
    save(model, args.out, meta)
    print(json.dumps(meta))
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB) after {seconds / 60:.1f} min of training")


if __name__ == "__main__":
    main()
