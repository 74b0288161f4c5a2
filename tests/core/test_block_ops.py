"""core.BlockOps: what every host does around a block, written once for ComfyUI, Forge and ldm."""
import torch

from deepcache_plugin.core import BlockOps, unet_forward
from deepcache_plugin.core.block_ops import transformer_count
from deepcache_plugin.demo.unet import timestep_embedding

from ..unets import inputs, tiny_unet


class Ops(BlockOps):
    """The demo U-Net's blocks, counting transformers the way the hosts' SpatialTransformers do."""

    def embed(self, x):
        return self.unet.time_embed(timestep_embedding(self.timesteps, self.unet.model_channels))

    def run_block(self, block, h, output_shape=None):
        out = super().run_block(block, h, output_shape)
        self.to["transformer_index"] += transformer_count(block)
        return out


@torch.no_grad()
def test_a_skipped_block_drops_its_residual_and_moves_the_transformer_index():
    unet = tiny_unet()
    x, t, c, _ = inputs()
    seen = []

    def record(h, hsp, to):
        seen.append((to["block"], to["transformer_index"]))
        return h, hsp

    def run(deep=None):
        control = {"output": [torch.full((1,), float(k)) for k in range(12)], "middle": [torch.zeros(1)],
                   "input": [torch.zeros(1)] * 12}
        ops = Ops(unet, t, c, control=control, transformer_options={"patches": {"output_block_patch": [record]}})
        out, feature = unet_forward(ops, x, 12, 0, deep=deep)
        return ops, control, feature

    ops, control, feature = run()
    full = dict(seen)
    seen.clear()
    ops, control, _ = run(deep=feature)
    # the host's lists stay whole (its forward may still run after ours); ours were consumed in full
    assert len(control["output"]) == 12 and ops.control["output"] == [] and ops.control["middle"] == []
    assert seen == [(("output", 11), full[("output", 11)])]  # the same index as in a full forward


@torch.no_grad()
def test_an_in_place_output_patch_never_reaches_the_stored_feature():
    unet = tiny_unet()
    x, t, c, _ = inputs()

    def freeu_like(h, hsp, to):
        h[:, : h.shape[1] // 2] *= 2.0  # FreeU scales half the channels in place
        return h, hsp

    to = {"patches": {"output_block_patch": [freeu_like]}}
    _, feature = unet_forward(Ops(unet, t, c, transformer_options=dict(to)), x, 12, 0)
    kept = feature.clone()
    unet_forward(Ops(unet, t, c, transformer_options=dict(to)), x, 12, 0, deep=feature)
    assert torch.equal(feature, kept)
    plain = Ops(unet, t, c)
    assert plain.keep(feature) is feature  # no patch, no copy
