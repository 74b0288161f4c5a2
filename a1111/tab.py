"""The DeepCache tab: schedule preview and side-by-side speed test."""
from __future__ import annotations

from . import preview, speedtest
from .hosts import lowvram
from .log import log_once
from .settings import default


def _loaded_unet():
    """The loaded ldm/sgm U-Net (A1111), or None (Forge, none loaded, --lowvram)."""
    try:
        from modules import shared
        model = shared.sd_model
        if model is None or hasattr(model, "forge_objects") or lowvram():
            return None
        return model.model.diffusion_model
    except Exception:
        return None


def show_preview(steps, interval, branch, schedule, start, end):
    return preview.render(steps, interval, branch, schedule, start, end, unet=_loaded_unet())


def make_tab(script_cls):
    import gradio as gr

    def speed(prompt, steps, size, seed, sampler_name, interval, branch, schedule, start, end):
        try:
            return speedtest.run(script_cls, prompt, steps, size, seed, sampler_name,
                                 interval, branch, schedule, start, end)
        except Exception as e:
            log_once(("speedtest", str(e)), f"speed test failed: {e}", e)
            return None, None, f"**Speed test failed:** {e}"

    with gr.Blocks(analytics_enabled=False) as tab:
        with gr.Row():
            with gr.Column():
                interval = gr.Slider(1, 20, step=1, value=default("deepcache_interval"), label="Cache interval")
                branch = gr.Slider(0, 11, step=1, value=default("deepcache_branch"), label="Cache branch")
                schedule = gr.Radio(["uniform", "non-uniform"], value=default("deepcache_schedule"), label="Schedule")
                start = gr.Slider(0.0, 1.0, step=0.01, value=default("deepcache_start"), label="Start percent")
                end = gr.Slider(0.0, 1.0, step=0.01, value=default("deepcache_end"), label="End percent")
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
        settings = [interval, branch, schedule, start, end]
        preview_button.click(show_preview, inputs=[steps] + settings, outputs=[plan])
        run_button.click(speed, inputs=[prompt, steps, size, seed, sampler_name] + settings,
                         outputs=[baseline, cached, report])
    return [(tab, "DeepCache", "deepcache")]
