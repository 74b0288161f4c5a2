"""BlockOps for ComfyUI's UNetModel: the steps of UNetModel._forward
(comfy/ldm/modules/diffusionmodules/openaimodel.py), one block at a time, with the
host's own block call (forward_timestep_embed), residual adder, emb patches and cat.
"""
from __future__ import annotations

from comfy.ldm.modules.diffusionmodules import openaimodel as om

from ..core import BlockOps


class ComfyUNetOps(BlockOps):
    def __init__(self, unet, timesteps, context, y, control, transformer_options, kwargs):
        super().__init__(unet, timesteps, context, y, control, transformer_options, apply_control=om.apply_control)
        self.video = dict(
            time_context=kwargs.get("time_context", None),
            num_video_frames=kwargs.get("num_video_frames", unet.default_num_video_frames),
            image_only_indicator=kwargs.get("image_only_indicator", None),
        )

    def run_block(self, block, h, output_shape=None):
        return om.forward_timestep_embed(block, h, self.emb, self.context, self.to, output_shape, **self.video)

    def embed(self, x):
        u = self.unet
        assert (self.y is not None) == (u.num_classes is not None), \
            "must specify y if and only if the model is class-conditional"
        emb = u.time_embed(om.timestep_embedding(self.timesteps, u.model_channels, repeat_only=False).to(x.dtype))
        for p in self.patches.get("emb_patch", ()):
            emb = p(emb, u.model_channels, self.to)
        if u.num_classes is not None:
            assert self.y.shape[0] == x.shape[0]
            emb = emb + u.label_emb(self.y)
        return emb

    def cat(self, h, hsp):
        return om.th.cat([h, hsp], dim=1)

    def finish(self, h):
        h = h.type(self.x_dtype)
        return self.unet.id_predictor(h) if self.unet.predict_codebook_ids else self.unet.out(h)
