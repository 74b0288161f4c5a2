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

from ..core import DeepCacheConfig, Mode, RunState, describe_unet, shared_store, unet_forward
from ..core.cost import architecture_costs
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
    """Patch a clone of model; an upstream DeepCache node's wrappers are replaced."""
    m = model.clone()
    for kind in (pe.WrappersMP.OUTER_SAMPLE, pe.WrappersMP.PREDICT_NOISE, pe.WrappersMP.DIFFUSION_MODEL):
        m.remove_wrappers_with_key(kind, KEY)
    m.model_options.setdefault("transformer_options", {})[KEY] = spec
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


@torch.compiler.disable  # fake-tensor counting is never traced by a compiled forward
def _cost_fraction(unet, branch, x, timesteps, context, y, transformer_options, kwargs) -> Optional[float]:
    """S(b) for this architecture and latent size, counted once on fake tensors."""
    probe_options = {k: v for k, v in transformer_options.items() if k not in ("patches", "patches_replace")}
    costs = architecture_costs(
        unet, lambda: ComfyUNetOps(unet, timesteps, context, y, None, probe_options, kwargs), x, context)
    return None if costs is None else costs.cached_fraction(branch)


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


@torch.compiler.disable  # plain Python bookkeeping: a compiled forward gets one graph per mode
def _decide(run: Optional[RunState], transformer_options, x):
    sigmas = transformer_options.get("sigmas")
    if run is None or sigmas is None:
        return Mode.PASSTHROUGH, None
    keys = _keys(transformer_options, x)
    return run.decide(float(sigmas.reshape(-1)[0]), keys), keys


def deepcache_forward(original, unet, x, timesteps=None, context=None, y=None, control=None,
                      transformer_options={}, **kwargs):
    """UNetModel._forward with DeepCache: the host's own, our full forward storing the
    deep feature, or the shallow branch on the stored one."""
    run: Optional[RunState] = transformer_options.get(RUN_KEY)
    mode, keys = _decide(run, transformer_options, x)
    if mode is Mode.PASSTHROUGH:
        return original(x, timesteps, context, y, control, transformer_options, **kwargs)
    branch = run.config.branch
    saved_control = {k: list(v) for k, v in control.items()} if isinstance(control, dict) else None
    try:
        if not run.cost_probed:
            run.cost_probed = True
            run.cost_fraction = _cost_fraction(unet, branch, x, timesteps, context, y, transformer_options, kwargs)
        ops = ComfyUNetOps(unet, timesteps, context, y, control, transformer_options, kwargs)
        if mode is Mode.FULL:
            return unet_forward(ops, x, run.depth, branch, store_deep=lambda h: run.cache.write(keys, h))
        return unet_forward(ops, x, run.depth, branch, deep=run.cache.read(keys))
    except comfy.model_management.InterruptProcessingException:
        raise
    except Exception as e:  # the cache must never break the user's run: fall back to the host
        if saved_control is not None:
            control.clear()
            control.update(saved_control)
        run.disable(f"{type(e).__name__}: {e}")
        log.warning("DeepCache: %s; using the normal U-Net for the rest of this run", run.disabled_reason,
                    exc_info=log.isEnabledFor(logging.DEBUG))
        return original(x, timesteps, context, y, control, transformer_options, **kwargs)
