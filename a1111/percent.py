"""Start/end percent to the noise level where caching starts/stops, the same
meaning ComfyUI gives them, so a range covers the same part of denoising in
txt2img, img2img and the hires pass."""
from __future__ import annotations

import math

import torch


def _sigma_table(sd_model):
    acp = getattr(sd_model, "alphas_cumprod", None)
    if not isinstance(acp, torch.Tensor) or acp.ndim != 1 or len(acp) < 2:
        return None
    acp = acp.detach().double().cpu()
    return ((1 - acp) / acp).sqrt()


def percent_to_sigma(sd_model, percent: float) -> float:
    """sigma at timestep (1 - percent) * 999, log-interpolated (k-diffusion's t_to_sigma);
    percent 0 is +inf (from the start), 1 is 0 (to the end)."""
    if percent <= 0.0:
        return math.inf
    if percent >= 1.0:
        return 0.0
    forge = getattr(getattr(sd_model, "forge_objects", None), "unet", None)
    predictor = getattr(getattr(forge, "model", None), "predictor", None)
    if predictor is not None and hasattr(predictor, "percent_to_sigma"):
        return float(predictor.percent_to_sigma(percent))
    table = _sigma_table(sd_model)
    if table is None:
        raise ValueError("the model has no alphas_cumprod table to map start/end percent to noise levels")
    t = (1.0 - percent) * (len(table) - 1)
    lo, frac = int(math.floor(t)), t - math.floor(t)
    hi = min(lo + 1, len(table) - 1)
    return float(math.exp((1 - frac) * math.log(table[lo]) + frac * math.log(table[hi])))


def percent_to_timestep(percent: float, num_timesteps: int = 1000) -> float:
    """For DDIM/PLMS/UniPC, which call the model with integer timesteps."""
    if percent <= 0.0:
        return math.inf
    return (1.0 - percent) * (num_timesteps - 1)
