"""Server routes for the DeepCache front-end panel (web/deepcache.js).

GET /deepcache/plan   the plan of one run (one entry per sampler step: "refresh",
                      "cached" or "off"), computed by core.schedule.plan_run over the
                      sigmas ComfyUI's own KSampler / BasicScheduler would use, plus the
                      speed-up estimate from the FLOP fractions of core.cost.
GET /deepcache/costs  per-branch cached FLOP fraction and resolution for the SD1.5,
                      SDXL and SDXL-refiner architectures (core.cost's count on ComfyUI's
                      own UNetModel on the meta device, once per size).

The front end never recomputes what Python knows: it only sends the widget values
and the sampler settings it found by walking the graph.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import math
from typing import Mapping

from ..core.config import ConfigError, DeepCacheConfig
from ..core.cost import speedup_from_counts
from ..core.schedule import StepKind, plan_run

log = logging.getLogger("DeepCache")

MAX_STEPS = 10000
ARCHS = {
    "sd15": dict(label="SD1.5", size=512),
    "sdxl": dict(label="SDXL", size=1024),
    "sdxl_refiner": dict(label="SDXL refiner", size=1024),
}


class BadRequest(ValueError):
    pass


def _get(params: Mapping[str, str], name: str, conv, default=None):
    raw = params.get(name)
    if raw is None or raw == "":
        if default is None:
            raise BadRequest(f"missing parameter {name}")
        return default
    try:
        value = conv(raw)
    except (TypeError, ValueError):
        raise BadRequest(f"{name}: not a valid value: {raw!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRequest(f"{name}: not a finite number")
    return value


def _opt_int(params, name):
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"{name}: not a whole number: {raw!r}") from None


# -- sigmas, the way the host computes them -----------------------------------------------------
@functools.lru_cache(maxsize=1)
def _model_sampling():
    import comfy.model_sampling
    return comfy.model_sampling.ModelSamplingDiscrete()  # eps, the SD1.x/SDXL default schedule


class _StubModel:
    def get_model_object(self, name):
        return _model_sampling()


def host_sigmas(steps: int, scheduler: str, sampler: str | None, denoise: float | None,
                start_step: int | None, end_step: int | None, source: str = "ksampler") -> list[float]:
    """The sigmas of one sampler call.

    source "ksampler": comfy.samplers.KSampler (KSampler, KSamplerAdvanced), including the
    samplers that discard the penultimate sigma and KSampler.sample's start/last step slicing.
    source "basic": BasicScheduler (SamplerCustom's usual sigma source).
    """
    import comfy.samplers
    if source == "basic":
        total = steps
        if denoise is not None and denoise < 1.0:
            if denoise <= 0.0:
                return []
            total = int(steps / denoise)
        sigmas = comfy.samplers.calculate_sigmas(_model_sampling(), scheduler, total).cpu()
        sigmas = sigmas[-(steps + 1):]
    else:
        ks = comfy.samplers.KSampler(_StubModel(), steps, "cpu", sampler, scheduler, denoise)
        sigmas = ks.sigmas
    if end_step is not None and end_step < len(sigmas) - 1:
        sigmas = sigmas[:end_step + 1]
    if start_step is not None:
        if start_step < len(sigmas) - 1:
            sigmas = sigmas[start_step:]
        else:
            return []  # KSampler returns the latent unchanged: no step runs
    return [float(s) for s in sigmas]


def parse_config(params: Mapping[str, str]) -> DeepCacheConfig:
    d = DeepCacheConfig()
    try:
        return DeepCacheConfig(
            interval=_get(params, "interval", int, d.interval),
            branch=_get(params, "branch", int, d.branch),
            start_percent=_get(params, "start_percent", float, d.start_percent),
            end_percent=_get(params, "end_percent", float, d.end_percent),
            schedule=params.get("schedule") or d.schedule,
            center=_get(params, "center", float, d.center),
            power=_get(params, "power", float, d.power))
    except ConfigError as e:
        raise BadRequest(str(e)) from None


def plan_response(params: Mapping[str, str], sigmas_fn=host_sigmas) -> dict:
    config = parse_config(params)
    steps = _get(params, "steps", int)
    if not 1 <= steps <= MAX_STEPS:
        raise BadRequest(f"steps must be 1..{MAX_STEPS}")
    denoise = _get(params, "denoise", float, 1.0)
    source = params.get("source") or "ksampler"
    if source not in ("ksampler", "basic"):
        raise BadRequest("source must be ksampler or basic")
    sigmas = sigmas_fn(steps, params.get("scheduler") or "normal", params.get("sampler") or None, denoise,
                       _opt_int(params, "start_step"), _opt_int(params, "end_step"), source)
    ms = _model_sampling()
    plan = plan_run(config, sigmas, start_sigma=float(ms.percent_to_sigma(config.start_percent)),
                    end_sigma=float(ms.percent_to_sigma(config.end_percent)))
    counts = {k: sum(1 for p in plan if p is k) for k in StepKind}
    out = {
        "plan": [k.value for k in plan],
        "steps": len(plan),
        "refresh_steps": counts[StepKind.REFRESH],
        "cached_steps": counts[StepKind.CACHED],
        "off_steps": counts[StepKind.OFF],
        "full_steps": counts[StepKind.REFRESH] + counts[StepKind.OFF],
        "enabled": config.enabled,
    }
    arch = params.get("arch")
    if arch:
        costs = arch_costs(arch, *_size(params, arch))
        try:
            config.check_branch(costs["depth"])
        except ConfigError as e:
            out["branch_error"] = f"{costs['label']}: {e}"
        else:
            s = costs["branches"][config.branch]["cached_fraction"]
            # the same estimate RunState.summary reports after a run (one evaluation per step here)
            out["estimated_speedup"] = speedup_from_counts(out["full_steps"], out["cached_steps"], s)
            out["cached_fraction"] = s
            out["branch_info"] = costs["branches"][config.branch]
        out["arch"] = {k: costs[k] for k in ("arch", "label", "depth", "width", "height")}
    return out


# -- FLOP fractions per branch ------------------------------------------------------------------
def _size(params, arch):
    if arch not in ARCHS:
        raise BadRequest(f"arch must be one of {', '.join(ARCHS)}")
    default = ARCHS[arch]["size"]
    w = _get(params, "width", int, default)
    h = _get(params, "height", int, default)
    # round to 64 px so a handful of sizes share one count; clamp to sane sizes
    return tuple(min(max(int(round(v / 64)) * 64, 256), 2048) for v in (w, h))


# The full-size U-Nets of each family, as ComfyUI's model detection configures them
_COMMON = dict(use_checkpoint=False, image_size=32, in_channels=4, out_channels=4, use_spatial_transformer=True,
               legacy=False, use_temporal_attention=False, use_temporal_resblock=False)
UNET_CONFIGS = {
    "sd15": dict(_COMMON, adm_in_channels=None, model_channels=320, num_res_blocks=[2, 2, 2, 2],
                 channel_mult=[1, 2, 4, 4], transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0], transformer_depth_middle=1,
                 transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], use_linear_in_transformer=False,
                 context_dim=768, num_heads=8),
    "sdxl": dict(_COMMON, num_classes="sequential", adm_in_channels=2816, model_channels=320,
                 num_res_blocks=[2, 2, 2], channel_mult=[1, 2, 4], transformer_depth=[0, 0, 2, 2, 10, 10],
                 transformer_depth_middle=10, transformer_depth_output=[0, 0, 0, 2, 2, 2, 10, 10, 10],
                 use_linear_in_transformer=True, context_dim=2048, num_head_channels=64),
    "sdxl_refiner": dict(_COMMON, num_classes="sequential", adm_in_channels=2560, model_channels=384,
                         num_res_blocks=[2, 2, 2, 2], channel_mult=[1, 2, 4, 4],
                         transformer_depth=[0, 0, 4, 4, 4, 4, 0, 0], transformer_depth_middle=4,
                         transformer_depth_output=[0, 0, 0, 4, 4, 4, 4, 4, 4, 0, 0, 0],
                         use_linear_in_transformer=True, context_dim=1280, num_head_channels=64),
}


@functools.lru_cache(maxsize=16)
def arch_costs(arch: str, width: int, height: int) -> dict:
    """core.cost's count on ComfyUI's own UNetModel of that family, built on the meta device
    (no weights, no compute), once per architecture and size."""
    import comfy.ldm.modules.attention as attention
    import comfy.ops
    import torch
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    from ..core import unet_forward
    from ..core.cost import architecture_costs
    from .comfy_ops import ComfyUNetOps

    cfg = UNET_CONFIGS[arch]
    unet = UNetModel(**cfg, device="meta", operations=comfy.ops.disable_weight_init)
    with torch.device("meta"):
        x = torch.empty(1, 4, height // 8, width // 8)
        t, c = torch.empty(1), torch.empty(1, 77, cfg["context_dim"])
        y = torch.empty(1, cfg["adm_in_channels"]) if cfg.get("num_classes") else None
    # the host picks its attention by free device memory, which the meta device has none of
    attention_override = {"optimized_attention_override": lambda fn, *a, **k: attention.attention_pytorch(*a, **k)}
    costs = architecture_costs(unet, lambda: ComfyUNetOps(unet, t, c, y, None, dict(attention_override), {}), x, c)
    if costs is None:
        raise RuntimeError(f"could not count the FLOPs of the {ARCHS[arch]['label']} U-Net")
    shapes: dict[int, tuple] = {}  # what each input block puts out: the resolution a branch works at

    def record(h, to):
        shapes[to["block"][1]] = tuple(h.shape)
        return h

    options = dict(attention_override, patches={"input_block_patch": [record]})
    unet_forward(ComfyUNetOps(unet, t, c, y, None, options, {}), x, len(unet.input_blocks), 0)
    depth = len(unet.input_blocks)
    branches = []
    for b in range(depth):
        _, ch, lh, lw = shapes[b]
        branches.append({"branch": b, "cached_fraction": costs.cached_fraction(b), "channels": ch,
                         "latent": [lh, lw], "pixels": [lh * 8, lw * 8],
                         "downscale": (height // 8) // lh if lh else None})
    return {"arch": arch, "label": ARCHS[arch]["label"], "depth": depth, "width": width, "height": height,
            "gflops_per_eval": round(costs.total / 1e9, 1), "branches": branches}


def costs_response(params: Mapping[str, str]) -> dict:
    archs = [params["arch"]] if params.get("arch") else list(ARCHS)
    return {"archs": {a: arch_costs(a, *_size(params, a)) for a in archs}}


# -- aiohttp ------------------------------------------------------------------------------------
def register(routes) -> None:
    from aiohttp import web

    async def run(fn, request):
        params = dict(request.rel_url.query)
        try:
            data = await asyncio.get_running_loop().run_in_executor(None, fn, params)
        except BadRequest as e:
            return web.json_response({"error": str(e)}, status=400)
        except Exception as e:  # the panel shows the message; the server keeps running
            log.warning("DeepCache: %s failed: %s", request.path, e)
            return web.json_response({"error": f"{type(e).__name__}: {e}"}, status=500)
        return web.json_response(data)

    @routes.get("/deepcache/plan")
    async def plan(request):
        return await run(plan_response, request)

    @routes.get("/deepcache/costs")
    async def costs(request):
        return await run(costs_response, request)


def _register_with_server() -> None:
    try:
        from server import PromptServer
        routes = PromptServer.instance.routes
    except Exception:  # not inside a ComfyUI server (tests, library use)
        return
    register(routes)


_register_with_server()
