"""The accordion in txt2img and img2img (gradio components common to 3.41 and 4.40)."""
from __future__ import annotations

from . import infotext
from .settings import ARG_NAMES, default

NOTE = ("Skips the deep U-Net blocks on cached steps. Turns itself off for a generation, with a note "
        "under the image, when ControlNet (sd-webui-controlnet) or another extension replaces the U-Net.")


def build(script, is_img2img: bool) -> list:
    import gradio as gr
    from modules.ui_components import InputAccordion

    with InputAccordion(bool(default("deepcache_enable")), label="DeepCache",
                        elem_id=script.elem_id("enable")) as enabled:
        gr.Markdown(NOTE)
        with gr.Row():
            interval = gr.Slider(1, 20, step=1, value=default("deepcache_interval"), label="Cache interval",
                                 elem_id=script.elem_id("interval"))
            branch = gr.Slider(0, 11, step=1, value=default("deepcache_branch"), label="Cache branch",
                               elem_id=script.elem_id("branch"))
        with gr.Row():
            schedule = gr.Radio(["uniform", "non-uniform"], value=default("deepcache_schedule"), label="Schedule",
                                elem_id=script.elem_id("schedule"))
            start = gr.Slider(0.0, 1.0, step=0.01, value=default("deepcache_start"), label="Start percent",
                              elem_id=script.elem_id("start"))
            end = gr.Slider(0.0, 1.0, step=0.01, value=default("deepcache_end"), label="End percent",
                            elem_id=script.elem_id("end"))
        # img2img has no hires pass; the components stay (hidden) so the arguments line up
        with gr.Row(visible=not is_img2img):
            hr_enabled = gr.Checkbox(value=bool(default("deepcache_hr_enable")), label="Also on the hires pass",
                                     elem_id=script.elem_id("hr_enable"))
            hr_interval = gr.Slider(1, 20, step=1, value=default("deepcache_hr_interval"),
                                    label="Hires cache interval", elem_id=script.elem_id("hr_interval"))
            hr_start = gr.Slider(0.0, 1.0, step=0.01, value=default("deepcache_hr_start"),
                                 label="Hires start percent", elem_id=script.elem_id("hr_start"))
    components = [enabled, interval, branch, schedule, start, end, hr_enabled, hr_interval, hr_start]
    script.infotext_fields = [(c, infotext.paste_value(name)) for c, name in zip(components, ARG_NAMES)]
    script.paste_field_names = []
    return components
