"""The DeepCache node (V3 schema): MODEL -> MODEL."""
from __future__ import annotations

import logging

from comfy_api.latest import io

from ..core import ConfigError, DeepCacheConfig, NotAUNetError, describe_unet
from ..core.config import SCHEDULES
from .wrappers import DeepCacheSpec, install

log = logging.getLogger("DeepCache")
_warned_models: set = set()


class DeepCacheNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        d = DeepCacheConfig()
        return io.Schema(
            node_id="DeepCache",
            display_name="DeepCache",
            category="model_patches/unet",
            description=(
                "Training-free U-Net speed-up (Ma, Fang, Wang 2023): on cached steps only the shallow "
                "branch of the U-Net runs and the deep features of the last refresh step are reused. "
                "For SD1.x, SD2.x and SDXL; other models pass through unchanged."),
            inputs=[
                io.Model.Input("model", tooltip="The U-Net model (SD1.x, SD2.x, SDXL) to speed up."),
                io.Int.Input("cache_interval", default=d.interval, min=1, max=1000, tooltip=(
                    "N: one full step, then N-1 cached steps. 1 = off (the exact image of the unpatched "
                    "model); 3 is about x2-2.5 faster; higher is faster with more change to the image.")),
                io.Int.Input("cache_branch", default=d.branch, min=0, max=11, tooltip=(
                    "Skip branch b: input blocks 0..b and output blocks L-1-b..L-1 run on cached steps. "
                    "0 = fastest, higher = closer to the full image. SD1.x/SD2.x have 0..11, SDXL 0..8.")),
                io.Float.Input("start_percent", default=d.start_percent, min=0.0, max=1.0, step=0.01, tooltip=(
                    "Where in the denoising process caching starts (0 = first step). Before it every "
                    "step runs the whole U-Net. Same meaning as in ControlNet Apply Advanced.")),
                io.Float.Input("end_percent", default=d.end_percent, min=0.0, max=1.0, step=0.01, tooltip=(
                    "Where in the denoising process caching ends (1 = last step). After it every step "
                    "runs the whole U-Net.")),
                io.Combo.Input("schedule", options=list(SCHEDULES), default=d.schedule, tooltip=(
                    "uniform: refresh every N-th step. non-uniform: the paper's schedule, with refresh "
                    "steps denser around the center (the paper reports it better at large intervals).")),
                io.Float.Input("center", default=d.center, min=0.0, max=1.0, step=0.01, optional=True, tooltip=(
                    "non-uniform only: where refresh steps are densest, as a fraction of the steps "
                    "(the paper's c=15 of 50 steps = 0.3).")),
                io.Float.Input("power", default=d.power, min=0.5, max=4.0, step=0.05, optional=True, tooltip=(
                    "non-uniform only: how strongly refresh steps gather around the center "
                    "(the paper's p = 1.4).")),
            ],
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
