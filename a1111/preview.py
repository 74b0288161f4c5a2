"""The schedule preview of the DeepCache tab: which steps run the whole U-Net,
and what that saves on the loaded model."""
from __future__ import annotations

from typing import Optional

import torch

from ..core import ConfigError, DeepCacheConfig, describe_unet, estimated_speedup
from ..core.cost import try_block_costs
from ..core.ldm_ops import LdmOps
from ..core.schedule import StepKind, plan_run

SYMBOL = {StepKind.REFRESH: "F", StepKind.CACHED: "c", StepKind.OFF: "-"}


def plan_for_steps(config: DeepCacheConfig, steps: int) -> list[StepKind]:
    """The plan of a run whose step i sits at i/steps of the denoising process
    (start/end percent land on the same steps for any noise schedule)."""
    levels = [1.0 - i / steps for i in range(steps)] + [0.0]
    return plan_run(config, levels, 1.0 - config.start_percent, 1.0 - config.end_percent)


def _dummy_inputs(unet, size: int):
    """One latent of size x size pixels and the conditioning this U-Net expects."""
    p = next(unet.parameters())
    conv = unet.input_blocks[0][0]
    x = torch.zeros(1, conv.in_channels, size // 8, size // 8, dtype=p.dtype, device=p.device)
    context_dim = next((m.in_features for n, m in unet.named_modules() if n.endswith("attn2.to_k")), None)
    context = None if context_dim is None else torch.zeros(1, 77, context_dim, dtype=p.dtype, device=p.device)
    y = None
    if getattr(unet, "num_classes", None) == "sequential":
        y = torch.zeros(1, unet.label_emb[0][0].in_features, dtype=p.dtype, device=p.device)
    return x, torch.full((1,), 500.0, device=p.device), context, y


def cached_fraction(unet, branch: int, size: int) -> Optional[float]:
    """FLOPs of a cached step over a full one for this ldm/sgm U-Net, or None."""
    try:
        depth = describe_unet(unet).depth
        x, t, context, y = _dummy_inputs(unet, size)
    except Exception:
        return None
    if branch >= depth:
        return None
    costs = try_block_costs(lambda: LdmOps(unet, t, context, y), x, depth)
    return None if costs is None else costs.cached_fraction(branch)


def render(steps, interval, branch, schedule, start, end, unet=None, size=512) -> str:
    """Markdown: the plan as one symbol per step, counts, and the ideal speed-up."""
    try:
        steps = int(steps)
        if steps < 1:
            raise ConfigError("steps must be at least 1")
        config = DeepCacheConfig(interval=int(interval), branch=int(branch), schedule=str(schedule),
                                 start_percent=float(start), end_percent=float(end))
        if unet is not None:
            config.check_branch(describe_unet(unet).depth)
    except (ConfigError, ValueError, TypeError) as e:
        return f"**Invalid settings:** {e}"
    plan = plan_for_steps(config, steps)
    full = sum(k is not StepKind.CACHED for k in plan)
    cached = steps - full
    lines = [f"`{''.join(SYMBOL[k] for k in plan)}`",
             "",
             f"{steps} steps: **{full} full** (F, and - outside start/end), **{cached} cached** (c)."]
    fraction = None if unet is None else cached_fraction(unet, config.branch, size)
    if fraction is not None:
        ideal = steps / (full + cached * fraction)
        lines.append(f"On the loaded model at {size}×{size}, a cached step costs {fraction:.0%} of a full one: "
                     f"ideal U-Net speed-up ×{ideal:.2f} (uniform interval {config.interval} alone: "
                     f"×{estimated_speedup(config.interval, fraction):.2f}).")
    else:
        lines.append("(No FLOP estimate: load an SD1.x/SD2.x/SDXL checkpoint in A1111 to see one.)")
    return "\n".join(lines)
