"""Our branch numbering and cached feature against the official DeepCacheSDHelper's
semantics, re-expressed on an openaimodel U-Net: on a cached step every module of
the deep path returns the output it had on the refresh step, the shallow branch runs."""
import pytest
import torch

from deepcache_plugin.core import LdmOps, unet_forward

from ..unets import inputs, tiny_unet


def helper_style_cached_call(unet, branch, refresh_args, cached_args):
    depth = len(unet.input_blocks)
    deep = [unet.input_blocks[i] for i in range(branch + 1, depth)] + [unet.middle_block] + \
        [unet.output_blocks[i] for i in range(depth - 1 - branch)]
    recorded = {}
    hooks = [m.register_forward_hook(lambda mod, a, out: recorded.__setitem__(mod, out)) for m in deep]
    unet(*refresh_args)
    for h in hooks:
        h.remove()
    hooks = [m.register_forward_hook(lambda mod, a, out: recorded[mod]) for m in deep]
    try:
        return unet(*cached_args)
    finally:
        for h in hooks:
            h.remove()


@pytest.mark.parametrize("kind, branch", [("sd15", 0), ("sd15", 1), ("sd15", 3), ("sdxl", 0), ("sdxl", 2)])
@torch.no_grad()
def test_cached_step_equals_official_module_output_caching(kind, branch):
    unet = tiny_unet(kind)
    depth = len(unet.input_blocks)
    x0, t0, c, y = inputs(kind, seed=1)
    x1 = x0 + 0.1 * torch.randn_like(x0)
    t1 = t0 - 50
    expected = helper_style_cached_call(unet, branch, (x0, t0, c, y), (x1, t1, c, y))
    _, deep = unet_forward(LdmOps(unet, t0, c, y), x0, depth, branch)
    ours, _ = unet_forward(LdmOps(unet, t1, c, y), x1, depth, branch, deep=deep)
    assert torch.equal(ours, expected)
