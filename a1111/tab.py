"""The DeepCache tab: a schedule preview (which steps run the whole U-Net, and the FLOP
ceiling on the loaded model) and a side-by-side speed test (the same txt2img job, same
seed, on the loaded model, without and with DeepCache, timed)."""
from __future__ import annotations

import contextlib
import logging
import time
from typing import Optional

import torch

from ..core import ConfigError, DeepCacheConfig, LdmOps, describe_unet
from ..core.cost import architecture_costs, estimated_speedup, speedup_from_counts
from ..core.schedule import StepKind, plan_run
from . import params
from .a1111_host import lowvram
from .forge_host import ForgeOps

log = logging.getLogger("DeepCache")
SYMBOL = {StepKind.REFRESH: "F", StepKind.CACHED: "c", StepKind.OFF: "-"}
SETTINGS = ("interval", "branch", "schedule", "start", "end")


# -- preview --------------------------------------------------------------------------------
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


def cached_fraction(unet, branch: int, size: int, forge: bool = False) -> Optional[float]:
    """FLOPs of a cached step over a full one for the loaded U-Net (core.cost's count), or None."""
    try:
        depth = describe_unet(unet).depth
        x, t, context, y = _dummy_inputs(unet, size)
    except Exception:
        return None
    if branch >= depth:
        return None
    make_ops = (lambda: ForgeOps(unet, t, context, y)) if forge else (lambda: LdmOps(unet, t, context, y))
    costs = architecture_costs(unet, make_ops, x, context)
    return None if costs is None else costs.cached_fraction(branch)


def render(steps, interval, branch, schedule, start, end, unet=None, size=512, forge=False) -> str:
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
    lines = [f"`{''.join(SYMBOL[k] for k in plan)}`", "",
             f"{steps} steps: **{full} full** (F, and - outside start/end), **{cached} cached** (c)."]
    fraction = None if unet is None else cached_fraction(unet, config.branch, size, forge)
    if fraction is not None:
        ideal = speedup_from_counts(full, cached, fraction)
        lines.append(f"On the loaded model at {size}×{size}, a cached step costs {fraction:.0%} of a full one: "
                     f"ideal U-Net speed-up ×{ideal:.2f} (uniform interval {config.interval} alone: "
                     f"×{estimated_speedup(config.interval, fraction):.2f}).")
    else:
        lines.append("(No FLOP estimate: load an SD1.x/SD2.x/SDXL checkpoint to see one.)")
    return "\n".join(lines)


def _loaded_unet():
    """(the loaded U-Net, is it Forge's), or (None, False) (none loaded, --lowvram)."""
    try:
        from modules import shared
        model = shared.sd_model
        if model is None or lowvram():
            return None, False
        if hasattr(model, "forge_objects"):
            return model.forge_objects.unet.model.diffusion_model, True
        return model.model.diffusion_model, False
    except Exception:
        return None, False


def show_preview(steps, *settings):
    unet, forge = _loaded_unet()
    return render(steps, *settings, unet=unet, forge=forge)


# -- speed test -----------------------------------------------------------------------------
def _runner_with(script_cls, args):
    """A ScriptRunner holding only a fresh DeepCache script, so the test runs through the
    same hooks as a normal generation and nothing else."""
    from modules import scripts
    runner = scripts.ScriptRunner()
    script = script_cls()
    script.args_from, script.args_to = 0, len(args)
    script.is_txt2img, script.is_img2img = True, False
    script.filename = getattr(script, "filename", None) or __file__
    runner.scripts.append(script)
    runner.alwayson_scripts.append(script)
    return runner


def _generate(script_cls, args, prompt, steps, size, seed, sampler_name):
    from modules import processing, shared
    p = processing.StableDiffusionProcessingTxt2Img(
        sd_model=shared.sd_model, prompt=prompt, negative_prompt="", steps=int(steps), width=int(size),
        height=int(size), seed=int(seed), cfg_scale=7.0, sampler_name=sampler_name,
        do_not_save_samples=True, do_not_save_grid=True)
    p.scripts = _runner_with(script_cls, args)
    p.script_args = list(args)
    start = time.perf_counter()
    try:
        processed = processing.process_images(p)
    finally:
        p.close()
    return processed, time.perf_counter() - start


def _queue_lock():
    try:
        from modules.call_queue import queue_lock
        return queue_lock
    except Exception:
        return contextlib.nullcontext()


def speed_test(script_cls, prompt, steps, size, seed, sampler_name, interval, branch, schedule, start, end):
    """(baseline image, DeepCache image, markdown report)."""
    chosen = dict(zip(SETTINGS, (interval, branch, schedule, start, end)), enabled=True)
    on = [chosen.get(p.name, p.default) for p in params.PARAMS]
    off = [False] + on[1:]
    with _queue_lock():
        # one short warm-up so neither timed run pays for loading or kernel selection
        _generate(script_cls, off, prompt, 1, size, seed, sampler_name)
        base, t_base = _generate(script_cls, off, prompt, steps, size, seed, sampler_name)
        cached, t_cached = _generate(script_cls, on, prompt, steps, size, seed, sampler_name)
    notes = [c for c in (cached.comments or "").splitlines() if "DeepCache" in c]
    report = [f"Baseline: **{t_base:.2f} s**; DeepCache (interval {int(interval)}, branch {int(branch)}, "
              f"{schedule}): **{t_cached:.2f} s**; measured speed-up of the whole generation "
              f"**×{t_base / t_cached:.2f}** ({int(steps)} steps, {int(size)}×{int(size)}, seed {int(seed)}, "
              f"{sampler_name})."] + notes
    return base.images[0], cached.images[0], "\n\n".join(report)


# -- the tab --------------------------------------------------------------------------------
def make_tab(script_cls):
    import gradio as gr

    def speed(prompt, steps, size, seed, sampler_name, *settings):
        try:
            return speed_test(script_cls, prompt, steps, size, seed, sampler_name, *settings)
        except Exception as e:
            log.warning("DeepCache: speed test failed: %s", e, exc_info=True)
            return None, None, f"**Speed test failed:** {e}"

    with gr.Blocks(analytics_enabled=False) as tab:
        with gr.Row():
            with gr.Column():
                settings = [params.control(params.BY_NAME[name]) for name in SETTINGS]
                steps = gr.Slider(1, 150, step=1, value=20, label="Sampling steps")
                preview_button = gr.Button("Preview schedule")
                plan = gr.Markdown()
            with gr.Column():
                prompt = gr.Textbox(value="a photo of a lighthouse on a cliff at sunset", label="Prompt", lines=2)
                with gr.Row():
                    size = gr.Slider(256, 2048, step=64, value=512, label="Width and height")
                    seed = gr.Number(value=1234, precision=0, label="Seed")
                    sampler_name = gr.Textbox(value="Euler", label="Sampler")
                run_button = gr.Button("Run speed test", variant="primary")
                with gr.Row():
                    baseline = gr.Image(label="Baseline", interactive=False)
                    cached = gr.Image(label="DeepCache", interactive=False)
                report = gr.Markdown()
        preview_button.click(show_preview, inputs=[steps] + settings, outputs=[plan])
        run_button.click(speed, inputs=[prompt, steps, size, seed, sampler_name] + settings,
                         outputs=[baseline, cached, report])
    return [(tab, "DeepCache", "deepcache")]
