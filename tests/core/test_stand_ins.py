"""core.StandIns: DeepCache through a host's own forward (A1111's, and the loop
sd-webui-controlnet puts in its place), against the block-by-block core forward."""
import pytest
import torch

from deepcache_plugin.core import BlockOps, LdmOps, StandIns, unet_forward
from deepcache_plugin.core.stand_ins import UnsupportedForward
from deepcache_plugin.demo.unet import timestep_embedding

from ..unets import inputs, tiny_unet


def controlnet_style_forward(unet, x, t, context, y, residuals):
    """The shape of sd-webui-controlnet's forward (scripts/hook.py): its own loop over the
    blocks, a residual added to every skip and to the middle block's output."""
    ctrl = list(residuals)  # 12 skip residuals (input block order), then the middle one
    emb = unet.time_embed(timestep_embedding(t, unet.model_channels, repeat_only=False))
    if unet.num_classes is not None:
        emb = emb + unet.label_emb(y)
    hs, h = [], x
    for module in unet.input_blocks:
        h = module(h, emb, context)
        hs.append(h)
    h = unet.middle_block(h, emb, context)
    h = h + ctrl.pop()
    for module in unet.output_blocks:
        h = torch.cat([h, hs.pop() + ctrl.pop()], dim=1)
        h = module(h, emb, context)
    return unet.out(h)


def residuals_for(unet, x, t, c, y, seed=5):
    shapes = []
    hooks = [b.register_forward_hook(lambda m, a, o: shapes.append(o.shape)) for b in unet.input_blocks]
    hooks.append(unet.middle_block.register_forward_hook(lambda m, a, o: shapes.append(o.shape)))
    unet(x, t, c, y)
    for h in hooks:
        h.remove()
    g = torch.Generator().manual_seed(seed)
    return [0.1 * torch.randn(s, generator=g) for s in shapes]


@pytest.mark.parametrize("kind, branch", [("sd15", 0), ("sd15", 2), ("sdxl", 0), ("sdxl", 8)])
@torch.no_grad()
def test_full_and_cached_calls_through_the_host_forward(kind, branch):
    unet = tiny_unet(kind)
    depth = len(unet.input_blocks)
    x, t, c, y = inputs(kind)
    x1, t1 = x + 0.1, t - 40
    stand_ins = StandIns(unet, branch)
    stored = []
    full = stand_ins.full(lambda: unet(x, t, c, y), x, lambda h: stored.append(h.clone()))
    assert torch.equal(full, unet(x, t, c, y))  # a full call is the host's forward, unchanged
    _, expected = unet_forward(LdmOps(unet, t, c, y), x, depth, branch)
    assert torch.equal(stored[0], expected)  # the same deep feature as the core forward's
    parts = ("input_blocks", "middle_block", "output_blocks")
    before = {k: unet._modules[k] for k in parts}
    assert torch.equal(stand_ins.cached(lambda: unet(x, t, c, y), x, stored[0]), full)  # on its own feature
    ran = []
    hooks = [m.register_forward_hook(lambda m, a, o: ran.append(m)) for m in unet.modules()]
    cached = stand_ins.cached(lambda: unet(x1, t1, c, y), x1, stored[0])
    for h in hooks:
        h.remove()
    # the core forward on the same feature (its concatenation may lay memory out otherwise)
    assert torch.allclose(cached, unet_forward(LdmOps(unet, t1, c, y), x1, depth, branch, deep=stored[0])[0],
                          atol=1e-5)
    skipped = list(unet.input_blocks[branch + 1:]) + [unet.middle_block] + list(unet.output_blocks[:depth - 1 - branch])
    assert not any(m in ran for s in skipped for m in s.modules())  # the deep path computed nothing
    # the host's own modules are back after the cached calls
    assert all(unet._modules[k] is before[k] for k in parts), {k: type(unet._modules[k]).__name__ for k in parts}


@pytest.mark.parametrize("branch", [0, 3])
@torch.no_grad()
def test_controlnet_residuals_reach_the_blocks_that_run(branch):
    unet = tiny_unet("sd15")
    x, t, c, y = inputs("sd15")
    res = residuals_for(unet, x, t, c, y)
    stand_ins = StandIns(unet, branch)
    stored = []

    def host(xx, tt, residuals):
        return lambda: controlnet_style_forward(unet, xx, tt, c, y, residuals)

    full = stand_ins.full(host(x, t, res), x, lambda h: stored.append(h.clone()))
    assert torch.equal(full, controlnet_style_forward(unet, x, t, c, y, res))
    res1 = residuals_for(unet, x, t, c, y, seed=9)  # the next step's control
    cached = stand_ins.cached(host(x + 0.1, t - 40, res1), x, stored[0])
    # what the core forward gives with the host's control dict: residuals on the blocks that run
    control = {"output": list(res1[:12]), "middle": [res1[12]]}
    ops = BlockOps(unet, t - 40, c, y, control)
    ops.embed = lambda h: unet.time_embed(timestep_embedding(t - 40, unet.model_channels, repeat_only=False))
    expected, _ = unet_forward(ops, x + 0.1, 12, branch, deep=stored[0])
    assert torch.allclose(cached, expected, atol=1e-5)
    without = stand_ins.cached(host(x + 0.1, t - 40, [torch.zeros_like(r) for r in res1]), x, stored[0])
    assert not torch.equal(cached, without)  # the shallow blocks' residuals made a difference


@torch.no_grad()
def test_a_forward_that_does_not_run_the_blocks_is_refused():
    unet = tiny_unet()
    x, t, c, _ = inputs()
    stand_ins = StandIns(unet, 0)
    with pytest.raises(UnsupportedForward, match="does not run each U-Net block once"):
        stand_ins.full(lambda: torch.zeros_like(x), x, lambda h: None)  # e.g. a TensorRT engine
    with pytest.raises(UnsupportedForward):
        stand_ins.full(lambda: (unet(x, t, c), unet(x, t, c))[1], x, lambda h: None)  # an extra pass
    stored = []
    stand_ins.full(lambda: unet(x, t, c), x, stored.append)
    with pytest.raises(UnsupportedForward, match="2 times"):
        stand_ins.cached(lambda: (unet(x, t, c), unet(x, t, c))[1], x, stored[0].clone())
    with pytest.raises(ZeroDivisionError):  # the host's own error, and the modules are back
        stand_ins.cached(lambda: (unet(x, t, c), 1 / 0), x, stored[0].clone())
    assert type(unet.middle_block).__name__ != "_Placeholder"
    assert all(type(b).__name__ != "_Spliced" for b in unet.output_blocks)
