"""The Settings → DeepCache section: the defaults the accordion starts with."""
from __future__ import annotations

from .settings import OPTIONS, SECTION


def _component(key):
    import gradio as gr
    if key.endswith(("interval",)):
        return gr.Slider, {"minimum": 1, "maximum": 20, "step": 1}
    if key.endswith("branch"):
        return gr.Slider, {"minimum": 0, "maximum": 11, "step": 1}
    if key.endswith(("start", "end")):
        return gr.Slider, {"minimum": 0.0, "maximum": 1.0, "step": 0.01}
    if key.endswith("schedule"):
        return gr.Radio, {"choices": ["uniform", "non-uniform"]}
    return None, None  # booleans: A1111 picks a checkbox


def register_settings() -> None:
    from modules import shared
    for key, (value, label) in OPTIONS.items():
        component, args = _component(key)
        shared.opts.add_option(key, shared.OptionInfo(value, label, component, args, section=SECTION))
