"""UNetOps for ComfyUI's UNetModel: the steps of UNetModel._forward
(comfy/ldm/modules/diffusionmodules/openaimodel.py), one block at a time.

Every host hook runs where _forward runs it: ControlNet/T2I residuals, emb and
block patches (FreeU, Kohya Deep Shrink), forward_timestep_embed patches, and the
transformer_options that GLIGEN and attention patches key on (block,
transformer_index). Skipped blocks still advance transformer_index and discard
their ControlNet output residuals, so the recomputed blocks get their own.
"""
from __future__ import annotations

from comfy.ldm.modules.attention import SpatialTransformer
from comfy.ldm.modules.diffusionmodules import openaimodel as om


def _transformer_count(block) -> int:
    if block is None:
        return 0
    return sum(1 for layer in block if isinstance(layer, SpatialTransformer))


class ComfyUNetOps:
    def __init__(self, unet, timesteps, context, y, control, transformer_options, kwargs):
        self.unet = unet
        self.timesteps = timesteps
        self.context = context
        self.y = y
        self.control = control
        self.to = transformer_options
        self.patches = transformer_options.get("patches", {})
        self.video = dict(
            time_context=kwargs.get("time_context", None),
            num_video_frames=kwargs.get("num_video_frames", unet.default_num_video_frames),
            image_only_indicator=kwargs.get("image_only_indicator", None),
        )
        self.emb = None
        self.x_dtype = None

    def _run(self, block, h, output_shape=None):
        return om.forward_timestep_embed(block, h, self.emb, self.context, self.to, output_shape, **self.video)

    def _skip(self, block):
        if "transformer_index" in self.to:
            self.to["transformer_index"] += _transformer_count(block)

    def begin(self, x):
        u, to = self.unet, self.to
        self.x_dtype = x.dtype
        to["original_shape"] = list(x.shape)
        to["transformer_index"] = 0
        assert (self.y is not None) == (u.num_classes is not None), \
            "must specify y if and only if the model is class-conditional"
        t_emb = om.timestep_embedding(self.timesteps, u.model_channels, repeat_only=False).to(x.dtype)
        emb = u.time_embed(t_emb)
        for p in self.patches.get("emb_patch", ()):
            emb = p(emb, u.model_channels, to)
        if u.num_classes is not None:
            assert self.y.shape[0] == x.shape[0]
            emb = emb + u.label_emb(self.y)
        self.emb = emb
        return x

    def input_block(self, i, h):
        self.to["block"] = ("input", i)
        h = self._run(self.unet.input_blocks[i], h)
        h = om.apply_control(h, self.control, "input")
        for p in self.patches.get("input_block_patch", ()):
            h = p(h, self.to)
        skip = h
        for p in self.patches.get("input_block_patch_after_skip", ()):
            h = p(h, self.to)
        return skip, h

    def skip_input_block(self, i):
        self._skip(self.unet.input_blocks[i])

    def middle_block(self, h):
        self.to["block"] = ("middle", 0)
        if self.unet.middle_block is not None:
            h = self._run(self.unet.middle_block, h)
        return om.apply_control(h, self.control, "middle")

    def skip_middle_block(self):
        self._skip(self.unet.middle_block)

    def output_block(self, i, h, hsp, output_shape):
        self.to["block"] = ("output", i)
        hsp = om.apply_control(hsp, self.control, "output")
        for p in self.patches.get("output_block_patch", ()):
            h, hsp = p(h, hsp, self.to)
        h = om.th.cat([h, hsp], dim=1)
        del hsp
        return self._run(self.unet.output_blocks[i], h, output_shape)

    def skip_output_block(self, i):
        self._skip(self.unet.output_blocks[i])
        # the host pops one output residual per output block: drop the skipped ones
        out = self.control.get("output") if self.control else None
        if out:
            out.pop()

    def finish(self, h):
        h = h.type(self.x_dtype)
        return self.unet.id_predictor(h) if self.unet.predict_codebook_ids else self.unet.out(h)
