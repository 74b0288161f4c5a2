"""bench/speed through a real ComfyUI (COMFYUI_PATH): ComfyUI's own UNetModel class
with full-size SD1.5 architecture and random weights, measured two ways:

1. per step, like bench/speed, with the plugin's ComfyUNetOps (the node's forward);
2. whole sampling runs through comfy.sample.sample (KSampler's path): the model as
   loaded vs the model patched by the DeepCache node (interval 3, branch 0),
   interleaved, after a warm-up.

    COMFYUI_PATH=/path/to/ComfyUI python3 -m bench.speed --models sd15-32
"""
from __future__ import annotations

import importlib.util
import statistics
import sys

import torch

from .common import ROOT, fill_random, interleaved_times, sibling

PACKAGE = "deepcache_plugin"
INTERVAL = 3  # the DeepCache node's cache_interval in the whole runs here and in bench/compile (branch 0)


def run_ceiling(steps: int, cached_fraction: float):
    """The FLOP ceiling of a whole run of `steps` steps at INTERVAL: its refresh steps (core.refresh_steps)
    full calls, the others cached ones costing cached_fraction of a full call (core.cost.speedup_from_counts)."""
    core = sibling("core")
    refresh = len(core.refresh_steps(core.DeepCacheConfig(interval=INTERVAL), steps))
    return sibling("core.cost").speedup_from_counts(refresh, steps - refresh, cached_fraction)


def import_comfy(path: str):
    if path not in sys.path:
        sys.path.insert(0, path)
    import comfy.cli_args
    comfy.cli_args.args.cpu = True  # before comfy.model_management reads it
    import comfy.model_management  # noqa: F401
    import comfy.sample  # noqa: F401
    return sys.modules["comfy"]


def load_plugin():
    """The repository as a package of its own name, as ComfyUI loads a custom node pack."""
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACKAGE, f"{ROOT}/__init__.py",
                                                      submodule_search_locations=[ROOT])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        spec.loader.exec_module(module)
    return sys.modules[PACKAGE]


SD15_UNET = {
    "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 320,
    "channel_mult": [1, 2, 4, 4], "num_res_blocks": [2, 2, 2, 2],
    "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "transformer_depth_middle": 1,
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    "context_dim": 768, "use_spatial_transformer": True, "legacy": False,
    "use_linear_in_transformer": False, "adm_in_channels": None, "use_temporal_attention": False,
    "use_temporal_resblock": False, "use_checkpoint": False, "dtype": torch.float32,
}


def sd15_patcher(unet_config=None, seed=0):
    import comfy.model_base
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models
    config = comfy.supported_models.SD15(dict(unet_config or SD15_UNET))
    model = comfy.model_base.BaseModel(config, model_type=comfy.model_base.ModelType.EPS)
    fill_random(model.diffusion_model, seed)
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def run(comfyui_path: str, repeats: int, side: int = 32, steps: int = 9, cfg: float = 7.0,
        unet_config=None, ctx_dim: int = 768, log=print) -> dict:
    import_comfy(comfyui_path)
    load_plugin()
    from importlib import import_module

    import comfy.sample
    ComfyUNetOps = import_module(f"{PACKAGE}.nodes.comfy_ops").ComfyUNetOps
    DeepCacheNode = import_module(f"{PACKAGE}.nodes.deepcache_node").DeepCacheNode
    from .speed import measure_unet

    log(f"  ComfyUI at {comfyui_path}: UNetModel, SD1.5 architecture, {side}x{side} latent")
    patcher = sd15_patcher(unet_config)
    unet = patcher.get_model_object("diffusion_model").eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, side, side, generator=gen)
    t = torch.full((1,), 500.0)
    ctx = torch.randn(1, 77, ctx_dim, generator=gen)
    per_step = measure_unet(
        unet, x, t, ctx, None, repeats=repeats, log=log,
        make_ops=lambda: ComfyUNetOps(unet, t, ctx, None, None, {}, {}),
        baseline_fn=lambda: unet(x, t, ctx, None, None, {}))

    # whole runs: KSampler's path, the plain model vs the node's patched clone
    patched = DeepCacheNode.execute(patcher, cache_interval=INTERVAL, cache_branch=0, start_percent=0.0,
                                    end_percent=1.0, schedule="uniform").result[0]
    off = DeepCacheNode.execute(patcher, cache_interval=1, cache_branch=0, start_percent=0.0,
                                end_percent=1.0, schedule="uniform").result[0]
    latent = torch.zeros(1, 4, side, side)
    noise = comfy.sample.prepare_noise(latent, 42)
    pos = [[torch.randn(1, 77, ctx_dim, generator=gen), {}]]
    neg = [[torch.randn(1, 77, ctx_dim, generator=gen), {}]]

    def sample(m):
        return lambda: comfy.sample.sample(m, noise, steps, cfg, "euler", "normal", pos, neg, latent,
                                           seed=42, disable_pbar=True)

    with torch.no_grad():
        times = interleaved_times({"plain": sample(patcher), "node_interval3": sample(patched),
                                   "node_interval1": sample(off)}, repeats=max(2, repeats // 2), warmup=1)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = statistics.median(a / b for a, b in zip(times["plain"], times["node_interval3"]))
    over = statistics.median(a / b for a, b in zip(times["node_interval1"], times["plain"])) - 1
    s0 = per_step["branches"]["0"]["intervals"][str(INTERVAL)]
    ceiling = run_ceiling(steps, per_step["branches"]["0"]["cached_over_full_flops"])
    lines = [
        f"Per step, ComfyUI's UNetModel through the node's ComfyUNetOps, {side}x{side} latent, batch 1: "
        f"b=0, N=3 ×{s0['measured']:.2f} / ceiling ×{s0['ceiling']:.2f} (efficiency {s0['efficiency']:.3f}); "
        f"overhead at interval 1 {100 * per_step['overhead_interval1']:+.2f} %.",
        "",
        f"Whole runs through `comfy.sample.sample` (KSampler's path; euler, {steps} steps, CFG {cfg}, "
        f"median of {len(times['plain'])} interleaved runs): plain model {med['plain']:.2f} s, DeepCache node "
        f"(interval 3, branch 0) {med['node_interval3']:.2f} s: **×{ratio:.2f}** (FLOP ceiling for this run "
        f"×{ceiling:.2f}, efficiency {ratio / ceiling:.3f}); node at interval 1: "
        f"{100 * over:+.2f} % next to the plain model.",
    ]
    for line in lines:
        log("    " + line)
    return dict(per_step=per_step, runs=dict(seconds=times, median=med, speedup=ratio, ceiling=ceiling,
                                             efficiency=ratio / ceiling, overhead_interval1=over,
                                             steps=steps, cfg=cfg, side=side), lines=lines)
