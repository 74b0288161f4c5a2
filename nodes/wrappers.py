"""DeepCache in ComfyUI's stackable wrapper API (comfy/patcher_extension.py).

OUTER_SAMPLE   one run: creates the RunState (plan, cache, counters), tracks finished
               sampler steps through the sampler callback, reports and frees at the end.
PREDICT_NOISE  one sampler evaluation (cond and uncond together) starts.
DIFFUSION_MODEL one U-Net call: host forward, our full forward (storing the deep
               feature per conditioning), or the shallow branch on the cached one.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Optional

import comfy.model_management
import comfy.model_patcher
import comfy.patcher_extension as pe
import torch

from ..core import DeepCacheConfig, RunState, call_unet, describe_unet, shared_store, unet_forward
from ..core.call import Call, open_call
from .comfy_ops import ComfyUNetOps
from .report import report_run
from .sampler_kind import calls_back_mid_step

KEY = "deepcache"          # wrapper key and transformer_options key of the spec
RUN_KEY = "deepcache_run"  # transformer_options key of the current RunState
log = logging.getLogger("DeepCache")


@dataclass(frozen=True)
class DeepCacheSpec:
    """What a node asked for; immutable, so model clones share it."""
    config: DeepCacheConfig
    node_id: Optional[str] = None

    def __deepcopy__(self, memo):
        return self


def install(model, spec: DeepCacheSpec):
    """Patch a clone of model; an upstream DeepCache node's wrappers are replaced. A spec
    that caches nothing (interval 1, start >= end) leaves the model's own forward alone."""
    kinds = (pe.WrappersMP.OUTER_SAMPLE, pe.WrappersMP.PREDICT_NOISE, pe.WrappersMP.DIFFUSION_MODEL)
    if not spec.config.enabled and KEY not in model.model_options.get("transformer_options", {}):
        return model
    m = model.clone()
    for kind in kinds:
        m.remove_wrappers_with_key(kind, KEY)
    m.model_options.setdefault("transformer_options", {}).pop(KEY, None)
    if not spec.config.enabled:
        return m
    m.model_options["transformer_options"][KEY] = spec
    m.add_wrapper_with_key(pe.WrappersMP.OUTER_SAMPLE, KEY, outer_sample_wrapper)
    m.add_wrapper_with_key(pe.WrappersMP.PREDICT_NOISE, KEY, predict_noise_wrapper)
    m.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, KEY, diffusion_model_wrapper)
    return m


def _arg(args, kwargs, index, name):
    return args[index] if len(args) > index else kwargs.get(name)


def _with_arg(args, kwargs, index, name, value):
    if len(args) > index:
        args = args[:index] + (value,) + args[index + 1:]
    else:
        kwargs = dict(kwargs, **{name: value})
    return args, kwargs


def _start_run(patcher, cfg: DeepCacheConfig, sigmas, sampler) -> RunState:
    unet = patcher.get_model_object("diffusion_model")
    sampling = patcher.get_model_object("model_sampling")
    return RunState(cfg, sigmas.tolist(), describe_unet(unet).depth, shared_store(unet).open_run(),
                    start_sigma=sampling.percent_to_sigma(cfg.start_percent),
                    end_sigma=sampling.percent_to_sigma(cfg.end_percent),
                    mid_step_callback=calls_back_mid_step(sampler))


def outer_sample_wrapper(executor, *args, **kwargs):
    # args: noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed
    guider = executor.class_obj
    spec = guider.model_options.get("transformer_options", {}).get(KEY)
    if not isinstance(spec, DeepCacheSpec):
        return executor(*args, **kwargs)
    try:
        run = _start_run(guider.model_patcher, spec.config, _arg(args, kwargs, 3, "sigmas"),
                         _arg(args, kwargs, 2, "sampler"))
    except Exception as e:
        log.warning("DeepCache: off for this run (%s: %s)", type(e).__name__, e)
        return executor(*args, **kwargs)
    user_callback = _arg(args, kwargs, 5, "callback")

    def callback(step, *rest, **kw):
        run.on_callback(step)  # once per step: after its last call, or its first (Heun)
        if user_callback is not None:
            return user_callback(step, *rest, **kw)

    args, kwargs = _with_arg(args, kwargs, 5, "callback", callback)
    orig_options = guider.model_options
    guider.model_options = comfy.model_patcher.create_model_options_clone(orig_options)
    guider.model_options["transformer_options"][RUN_KEY] = run
    started = time.perf_counter()
    try:
        return executor(*args, **kwargs)
    finally:
        guider.model_options = orig_options
        report_run(run.close(), spec, time.perf_counter() - started, run.plan)


def predict_noise_wrapper(executor, *args, **kwargs):
    model_options = _arg(args, kwargs, 2, "model_options") or {}
    run = model_options.get("transformer_options", {}).get(RUN_KEY)
    if run is not None:
        run.begin_evaluation()
    return executor(*args, **kwargs)


def _keys(transformer_options, x):
    """One cache key per row chunk: the conditioning's uuid and the chunk's shape."""
    ids = transformer_options.get("uuids") or transformer_options.get("cond_or_uncond") or ["batch"]
    if x.shape[0] % len(ids):
        ids = [tuple(ids)]
    shape = (x.shape[0] // len(ids),) + tuple(x.shape[1:])
    return [(i, shape, x.dtype) for i in ids]


def diffusion_model_wrapper(executor, *args, **kwargs):
    """Replace only the innermost UNetModel._forward: the wrappers registered after
    ours (other nodes) still run around our forward."""
    original, unet = executor.original, executor.class_obj

    def forward(*a, **k):
        return deepcache_forward(original, unet, *a, **k)

    try:
        rest = pe.WrapperExecutor.new_class_executor(forward, unet, executor.wrappers, executor.idx + 1)
    except AttributeError:  # a host whose executor hides its chain: we are the innermost we can be
        return forward(*args, **kwargs)
    return rest.execute(*args, **kwargs)


@torch.compiler.disable  # plain Python on host values: never traced by a compiled U-Net
def _open(transformer_options, x) -> Call:
    run: Optional[RunState] = transformer_options.get(RUN_KEY)
    return open_call(run, _keys(transformer_options, x) if run is not None else None, x)


def deepcache_forward(original, unet, x, timesteps=None, context=None, y=None, control=None,
                      transformer_options={}, **kwargs):
    """UNetModel._forward with DeepCache: the host's own, our full forward storing the
    deep feature, or the shallow branch on the stored one (core.call_unet decides)."""

    def host():
        return original(x, timesteps, context, y, control, transformer_options, **kwargs)

    def forward(call):
        ops = ComfyUNetOps(unet, timesteps, context, y, control, transformer_options, kwargs)
        return unet_forward(ops, x, call.depth, call.branch, deep=call.deep)

    return call_unet(lambda: _open(transformer_options, x), host, forward,
                     passthrough=(comfy.model_management.InterruptProcessingException,))
