"""The embedded demo model: a class-conditional openaimodel U-Net on 16x16 digits.

Architecture: the SD1.5 block layout (12 input blocks, middle block, 12 output
blocks with skip connections; attention at two levels and in the middle block;
timestep embedding plus a label embedding), shrunk to 32/32/32/64 channels and one
image channel (16x16 -> 8x8 -> 4x4 -> 2x2). Label 10 is the "no label" class used for classifier-free
guidance (training drops labels 10 % of the time).

Noise schedule: Stable Diffusion's "scaled linear" beta schedule (sqrt(beta) linear
from sqrt(0.00085) to sqrt(0.012) over 1000 steps; sigma from 0.029 to 14.6), epsilon
prediction, so the demo's sigmas are those of the SD1.x models the plugin targets.
Sampling goes through k-diffusion style sigmas
(sigma_t = sqrt((1 - abar_t) / abar_t)), the convention of ComfyUI and A1111.
"""
from __future__ import annotations

import os
from typing import Optional

import torch

from .unet import UNetModel

IMAGE_SIZE = 16
NUM_CLASSES = 10
NULL_LABEL = 10  # "no label": the unconditional branch of classifier-free guidance
NUM_TRAIN_TIMESTEPS = 1000

DEMO_DIGITS = dict(in_channels=1, out_channels=1, model_channels=32, num_res_blocks=2,
                   channel_mult=(1, 1, 1, 2), transformer_depth=(0, 1, 1, 0),
                   transformer_depth_middle=1, num_head_channels=32, context_dim=None,
                   num_classes=NUM_CLASSES + 1)

WEIGHTS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights", "digits_unet.safetensors")


def build_model(**overrides) -> UNetModel:
    return UNetModel(**dict(DEMO_DIGITS, **overrides))


def alphas_cumprod(num_timesteps: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, num_timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def model_sigmas() -> torch.Tensor:
    """sigma of every training timestep t = 0..999 (float64)."""
    ac = alphas_cumprod()
    return ((1 - ac) / ac).sqrt()


def ddim_sigmas(steps: int) -> torch.Tensor:
    """The sigmas of DDIM's evenly spaced timesteps (999, 999-k, ...), then 0.

    Euler over these sigmas with an epsilon model is exactly deterministic DDIM."""
    all_sigmas = model_sigmas()
    stride = NUM_TRAIN_TIMESTEPS / steps
    ts = [int(round(NUM_TRAIN_TIMESTEPS - 1 - i * stride)) for i in range(steps)]
    return torch.cat([all_sigmas[ts], torch.zeros(1, dtype=torch.float64)]).float()


def sigma_to_t(sigma: torch.Tensor) -> torch.Tensor:
    """The (fractional) timestep whose sigma is sigma, by log-sigma interpolation."""
    log_sigmas = model_sigmas().log().float()
    ls = sigma.float().clamp(min=1e-10).log().reshape(-1)
    idx = torch.searchsorted(log_sigmas, ls).clamp(1, len(log_sigmas) - 1)
    lo, hi = log_sigmas[idx - 1], log_sigmas[idx]
    w = ((ls - lo) / (hi - lo)).clamp(0, 1)
    return (idx - 1).float() + w


def load_model(path: Optional[str] = None, dtype=torch.float32) -> UNetModel:
    """The shipped demo U-Net (weights stored in float16), in eval mode."""
    from safetensors.torch import load_file
    model = build_model()
    state = load_file(path or WEIGHTS_PATH)
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    return model.to(dtype).eval().requires_grad_(False)
