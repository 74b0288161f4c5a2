"""The models: full-size and tiny U-Nets of demo/unet.py with random weights, their inputs, the sampler's
sigma schedule and their FLOP fractions S(b)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..common import fill_random, sibling

_core, _cost = sibling("core"), sibling("core.cost")
LdmOps, describe_unet = _core.LdmOps, _core.describe_unet
block_costs, branch_cost_fractions = _cost.block_costs, _cost.branch_cost_fractions
U = sibling("demo.unet")

# name -> (architecture, latent side, label, eager phase: seconds it needs on a GPU)
MODELS = {
    "sd15": (U.SD15, 64, "SD1.5, 512 px (64x64 latent)", 25.0),
    "sdxl": (U.SDXL, 128, "SDXL, 1024 px (128x128 latent)", 50.0),
    "tiny-sd15": (U.TINY_SD15, 8, "tiny SD1.5-shaped U-Net (smoke)", 1.0),
    "tiny-sdxl": (U.TINY_SDXL, 8, "tiny SDXL-shaped U-Net (smoke)", 1.0),
}


def build_unet(arch: dict, device: torch.device, dtype: torch.dtype) -> U.UNetModel:
    with torch.device("meta"):
        unet = U.UNetModel(**arch)
    unet = unet.to_empty(device=device).to(dtype)
    fill_random(unet)
    return unet.eval().requires_grad_(False)


def leaf_modules(unet) -> int:
    return sum(1 for m in unet.modules() if next(m.children(), None) is None)


def sd_schedule(steps: int, rho: float = 7.0):
    """Karras sigmas over SD's training range (scaled-linear betas, 1000 steps) and their timesteps."""
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    alphas = np.cumprod(1.0 - betas)
    train = np.sqrt((1.0 - alphas) / alphas)
    lo, hi = train[0] ** (1 / rho), train[-1] ** (1 / rho)
    sigmas = (hi + np.linspace(0.0, 1.0, steps) * (lo - hi)) ** rho
    ts = np.interp(np.log(sigmas), np.log(train), np.arange(1000, dtype=np.float64))
    return [float(s) for s in sigmas] + [0.0], [float(t) for t in ts]


@dataclass
class Setup:
    """One model at one size: the U-Net, its inputs and its FLOP fractions."""
    name: str
    label: str
    unet: U.UNetModel
    depth: int
    leaves: int
    noise: torch.Tensor
    ctx: torch.Tensor
    y: Optional[torch.Tensor]
    sigmas: list
    ts: list            # one (2,) tensor per step, each its own allocation
    guidance: float
    fractions: list     # S(b): FLOPs of a cached call / a full call, per branch
    full_gflop: float   # one full call (batch 2)
    params_m: float
    build_s: float


def model_inputs(arch: dict, side: int, device, dtype, gen_seed: int = 1):
    gen = torch.Generator().manual_seed(gen_seed)
    noise = torch.randn(1, arch.get("in_channels", 4), side, side, generator=gen)
    ctx = torch.randn(2, 77, arch["context_dim"], generator=gen)
    y = torch.randn(2, arch["adm_in_channels"], generator=gen) if arch.get("num_classes") == "sequential" else None
    cast = lambda v: None if v is None else v.to(device=device, dtype=dtype)
    return cast(noise), cast(ctx), cast(y)


_FLOPS: dict = {}


def flop_fractions(arch: dict, side: int, ctx_len: int = 77):
    """(S(b) per branch, GFLOP of one full call) at batch 2, counted on the meta device (no compute)."""
    key = (repr(sorted(arch.items())), side, ctx_len)
    if key not in _FLOPS:
        _FLOPS[key] = _count_flops(arch, side, ctx_len)
    return _FLOPS[key]


def _count_flops(arch: dict, side: int, ctx_len: int):
    with torch.device("meta"):
        unet = U.UNetModel(**arch)
        x = torch.empty(2, arch.get("in_channels", 4), side, side)
        t = torch.empty(2)
        ctx = torch.empty(2, ctx_len, arch["context_dim"])
        y = torch.empty(2, arch["adm_in_channels"]) if arch.get("num_classes") == "sequential" else None
    depth = describe_unet(unet).depth
    costs = block_costs(lambda: LdmOps(unet, t, ctx, y), x, depth)
    return branch_cost_fractions(costs), costs.total / 1e9


def make_setup(name: str, steps: int, device, dtype, guidance: float) -> Setup:
    arch, side, label, _ = MODELS[name]
    t0 = time.perf_counter()
    unet = build_unet(arch, device, dtype)
    noise, ctx, y = model_inputs(arch, side, device, dtype)
    sigmas, ts = sd_schedule(steps)
    fractions, gflop = flop_fractions(arch, side)
    ts = [torch.full((2,), t, dtype=torch.float32, device=device) for t in ts]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return Setup(name, label, unet, describe_unet(unet).depth, leaf_modules(unet), noise, ctx, y, sigmas, ts,
                 guidance, fractions, gflop, sum(p.numel() for p in unet.parameters()) / 1e6,
                 time.perf_counter() - t0)
