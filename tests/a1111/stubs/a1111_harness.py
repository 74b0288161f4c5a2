"""Load scripts/deepcache_a1111.py the way A1111's script_loading does, and build
the small U-Nets and generations the tests use."""
import importlib.util
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[3]


def load_extension():
    from modules import script_callbacks
    script_callbacks.clear_callbacks()  # A1111 clears them before (re)loading scripts
    path = ROOT / "scripts" / "deepcache_a1111.py"
    spec = importlib.util.spec_from_file_location("deepcache_a1111.py", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reset_host_state():
    """A clean web UI state per test."""
    from modules import shared
    shared.state.interrupted, shared.state.interrupt_at = False, None
    shared.opts.data.clear()


def package(name):
    return importlib.import_module("sd_deepcache_ext." + name)


def ldm_openaimodel():
    """ldm's openaimodel from stable-diffusion-sdkit; CI must have it, elsewhere skip."""
    if os.environ.get("CI"):
        import ldm.modules.diffusionmodules.openaimodel as m
        return m
    return pytest.importorskip("ldm.modules.diffusionmodules.openaimodel")


def tiny_ldm_unet(seed=0):
    """A1111's SD1.x UNetModel class (ldm) with SD1.5's block layout (12 skips), shrunk."""
    m = ldm_openaimodel()
    torch.manual_seed(seed)
    unet = m.UNetModel(image_size=8, in_channels=4, out_channels=4, model_channels=32,
                       attention_resolutions=[4, 2, 1], num_res_blocks=2, channel_mult=[1, 2, 4, 4],
                       num_head_channels=8, use_spatial_transformer=True, transformer_depth=1,
                       context_dim=24, use_linear_in_transformer=False, legacy=False)
    # ldm zero-initialises the output convs; random weights everywhere give a U-Net whose
    # output depends on every block, so a skipped block shows
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in unet.parameters():
            param.copy_(torch.randn(param.shape, generator=g) * (0.5 / max(1, param[0].numel()) ** 0.5))
    return unet.eval()


def tiny_demo_unet(kind="sd15", seed=0):
    from sd_deepcache_ext.demo.unet import TINY_SD15, TINY_SDXL, UNetModel
    torch.manual_seed(seed)
    return UNetModel(**(TINY_SD15 if kind == "sd15" else TINY_SDXL)).eval()


def script_args(enabled=True, interval=3, branch=0, schedule="uniform", start=0.0, end=1.0,
                hr_enabled=False, hr_interval=3, hr_start=0.0):
    return [enabled, float(interval), float(branch), schedule, start, end, hr_enabled, float(hr_interval), hr_start]


def generate(ext, sd_model, args=None, *, img2img=False, **kw):
    """One generation through the stand-in process_images with only DeepCache as script."""
    from modules import processing, scripts
    cls = processing.StableDiffusionProcessingImg2Img if img2img else processing.StableDiffusionProcessingTxt2Img
    p = cls(sd_model=sd_model, prompt="a cat", negative_prompt="", **kw)
    if args is not None:
        runner = scripts.ScriptRunner()
        script = ext.DeepCacheScript()
        script.args_from, script.args_to = 0, len(args)
        runner.alwayson_scripts.append(script)
        p.scripts, p.script_args = runner, list(args)
    return p, processing.process_images(p)
