"""A real ComfyUI (COMFYUI_PATH) imported as a library, and tiny random-weight
SD1.5- and SDXL-style models built with its own classes."""
import os
import sys

import pytest
import torch

from deepcache_plugin.bench.common import fill_random

COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
requires_comfy = pytest.mark.skipif(not COMFYUI_PATH, reason="COMFYUI_PATH is not set")
CTX = 32
POOLED = 32


def import_comfy():
    if COMFYUI_PATH not in sys.path:
        sys.path.insert(0, COMFYUI_PATH)
    import comfy.cli_args
    comfy.cli_args.args.cpu = True  # before comfy.model_management reads it
    import comfy.model_management  # noqa: F401
    import comfy.sample  # noqa: F401
    return sys.modules["comfy"]


def _unet_config(sdxl):
    cfg = {
        "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 32,
        "channel_mult": [1, 2, 2, 2], "num_res_blocks": [2, 2, 2, 2],
        "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "transformer_depth_middle": 1,
        "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
        "context_dim": CTX, "use_spatial_transformer": True, "legacy": False,
        "use_linear_in_transformer": sdxl, "adm_in_channels": None, "use_temporal_attention": False,
        "use_temporal_resblock": False, "use_checkpoint": False, "dtype": torch.float32,
    }
    if sdxl:  # SDXL's 3 levels (9 blocks), label embedding of pooled text + sizes
        cfg.update(channel_mult=[1, 2, 2], num_res_blocks=[2, 2, 2], transformer_depth=[0, 0, 1, 1, 2, 2],
                   transformer_depth_output=[0, 0, 0, 1, 1, 1, 2, 2, 2], num_classes="sequential",
                   adm_in_channels=POOLED + 6 * 256)
    return cfg


def _init_random(module, seed):
    fill_random(module, seed)
    with torch.no_grad():
        module.out[-1].weight.mul_(0.05)  # keep eps of a random model near unit scale


def tiny_model(kind="sd15", seed=0, dtype=torch.float32):
    import_comfy()
    import comfy.model_base
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models
    sdxl = kind == "sdxl"
    unet_config = dict(_unet_config(sdxl), dtype=dtype)
    config = (comfy.supported_models.SDXL if sdxl else comfy.supported_models.SD15)(unet_config)
    config.unet_config["num_head_channels"] = 16
    config.unet_config["num_heads"] = -1
    base = comfy.model_base.SDXL if sdxl else comfy.model_base.BaseModel
    model = base(config, model_type=comfy.model_base.ModelType.EPS)
    _init_random(model.diffusion_model, seed)
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def tiny_svd(seed=0):
    """An SVD-style video U-Net (VideoResBlock, SpatialVideoTransformer, c_concat, y)."""
    import_comfy()
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models
    cfg = dict(_unet_config(False), in_channels=8, use_linear_in_transformer=True, adm_in_channels=768,
               num_classes="sequential", use_temporal_attention=True, use_temporal_resblock=True,
               extra_ff_mix_layer=True, use_spatial_context=True, merge_strategy="learned_with_images",
               merge_factor=0.0, video_kernel_size=[3, 1, 1], disable_temporal_crossattention=False,
               channel_mult=[1, 2], num_res_blocks=[1, 1], transformer_depth=[1, 1],
               transformer_depth_output=[1, 1, 1, 1])
    config = comfy.supported_models.SVD_img2vid(cfg)
    config.unet_config["num_head_channels"] = 16
    model = comfy.model_base.SVD_img2vid(config)
    _init_random(model.diffusion_model, seed)
    return comfy.model_patcher.ModelPatcher(model, torch.device("cpu"), torch.device("cpu"))


def conds(kind="sd15", seed=1, batch=1):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(2):
        d = {}
        if kind == "sdxl":
            d.update(pooled_output=torch.randn(batch, POOLED, generator=g), width=128, height=128,
                     crop_w=0, crop_h=0, target_width=128, target_height=128)
        out.append([[torch.randn(batch, 77, CTX, generator=g), d]])
    return out


def sample(model, kind="sd15", steps=8, cfg=7.0, sampler="euler", scheduler="normal", seed=42, size=16,
           batch=1, denoise=1.0, latent=None, start_step=None, last_step=None, callback=None, positive=None,
           negative=None):
    import comfy.sample
    latent = torch.zeros(batch, 4, size, size) if latent is None else latent
    noise = comfy.sample.prepare_noise(latent, seed)
    pos, neg = conds(kind)
    return comfy.sample.sample(model, noise, steps, cfg, sampler, scheduler, positive or pos, negative or neg,
                               latent, denoise=denoise, start_step=start_step, last_step=last_step,
                               seed=seed, disable_pbar=True, callback=callback)


def deepcache(model, **settings):
    from deepcache_plugin.nodes.deepcache_node import DeepCacheNode
    defaults = dict(cache_interval=3, cache_branch=0, start_percent=0.0, end_percent=1.0, schedule="uniform")
    return DeepCacheNode.execute(model, **dict(defaults, **settings)).result[0]


class CallLog:
    """For every U-Net call: the sampler step it belongs to (from the sampler's own
    callback, independent of DeepCache) and whether the deep path (middle block) ran."""

    def __init__(self, model):
        self.step = 0
        self.calls = []
        self.ran = []  # per call: did the U-Net run at all (another cache node may skip it)
        self._mid = self._in = False
        unet = model.get_model_object("diffusion_model")
        unet.middle_block[0].register_forward_hook(self._mid_ran)  # the host iterates the block's layers
        unet.input_blocks[0][0].register_forward_hook(self._in_ran)
        import comfy.patcher_extension as pe
        model.add_wrapper_with_key(pe.WrappersMP.APPLY_MODEL, "test-calllog", self._apply_model)

    def _mid_ran(self, *a):
        self._mid = True

    def _in_ran(self, *a):
        self._in = True

    def _apply_model(self, executor, *args, **kwargs):
        self._mid = self._in = False
        out = executor(*args, **kwargs)
        to = args[5] if len(args) > 5 else kwargs["transformer_options"]
        self.calls.append((self.step, self._mid, tuple(to.get("uuids", ()))))
        self.ran.append(self._in)
        return out

    def callback(self, step, *rest):
        self.step = step + 1

    def steps_with_full_calls(self):
        return sorted({s for s, mid, _ in self.calls if mid})

    def evals_per_step(self):
        counts = {}
        for s, _, _ in self.calls:
            counts[s] = counts.get(s, 0) + 1
        return counts
