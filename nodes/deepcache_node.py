"""The DeepCache node (V3 schema): MODEL -> MODEL."""
from __future__ import annotations

import logging

from comfy_api.latest import io

from ..core import ConfigError, DeepCacheConfig, NotAUNetError, describe_unet
from ..core.settings import SETTINGS, Setting
from .wrappers import DeepCacheSpec, install

log = logging.getLogger("DeepCache")
_warned_models: set = set()


# the node's input names (saved in workflows) -> core.settings rows
INPUTS = {"cache_interval": "interval", "cache_branch": "branch", "start_percent": "start_percent",
          "end_percent": "end_percent", "schedule": "schedule", "center": "center", "power": "power"}


def _input(s: Setting, name: str, optional: bool):
    if s.choices:
        return io.Combo.Input(name, options=list(s.choices), default=s.default, tooltip=s.help, optional=optional)
    if s.is_int:
        return io.Int.Input(name, default=s.default, min=s.lo, max=s.hi, tooltip=s.help, optional=optional)
    return io.Float.Input(name, default=s.default, min=s.lo, max=s.hi, step=s.step, tooltip=s.help,
                          optional=optional)


class DeepCacheNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DeepCache",
            display_name="DeepCache",
            category="model_patches/unet",
            description=(
                "Training-free U-Net speed-up (Ma, Fang, Wang 2023): on cached steps only the shallow "
                "branch of the U-Net runs and the deep features of the last refresh step are reused. "
                "For SD1.x, SD2.x and SDXL; other models pass through unchanged."),
            inputs=[io.Model.Input("model", tooltip="The U-Net model (SD1.x, SD2.x, SDXL) to speed up.")]
            + [_input(SETTINGS[name], input_name, optional=name in ("center", "power"))
               for input_name, name in INPUTS.items()],
            outputs=[io.Model.Output(tooltip="The model with DeepCache; the input model is not changed.")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, model, cache_interval, cache_branch, start_percent, end_percent, schedule,
                center=DeepCacheConfig.center, power=DeepCacheConfig.power) -> io.NodeOutput:
        try:
            config = DeepCacheConfig(interval=cache_interval, branch=cache_branch, start_percent=start_percent,
                                     end_percent=end_percent, schedule=schedule, center=center, power=power)
        except ConfigError as e:
            raise ValueError(f"DeepCache: {e}") from None
        unet = model.get_model_object("diffusion_model")
        try:
            depth = describe_unet(unet).depth
        except NotAUNetError as e:
            if type(unet) not in _warned_models:
                _warned_models.add(type(unet))
                log.warning("DeepCache: %s. The model passes through unchanged.", e)
            return io.NodeOutput(model)
        try:
            config.check_branch(depth)
        except ConfigError as e:
            raise ValueError(f"DeepCache: {e}") from None
        node_id = cls.hidden.unique_id if cls.hidden is not None else None
        return io.NodeOutput(install(model, DeepCacheSpec(config, node_id)))
