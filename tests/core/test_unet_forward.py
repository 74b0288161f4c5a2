import pytest
import torch

from deepcache_plugin.core import LdmOps, NotAUNetError, describe_unet, unet_forward

from ..unets import inputs, tiny_unet


@pytest.mark.parametrize("kind, depth", [("sd15", 12), ("sdxl", 9)])
def test_depth_from_model(kind, depth):
    assert describe_unet(tiny_unet(kind)).depth == depth


def test_not_a_unet_is_rejected_with_message():
    with pytest.raises(NotAUNetError, match="not an openaimodel U-Net"):
        describe_unet(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("kind", ["sd15", "sdxl"])
@torch.no_grad()
def test_full_forward_is_bit_identical_to_model_forward(kind):
    unet = tiny_unet(kind)
    x, t, c, y = inputs(kind)
    depth, branch = len(unet.input_blocks), 2
    # the deep feature: the input of output block L-1-b before the skip is concatenated, i.e. the
    # output of the output block before it
    seen = {}
    hook = unet.output_blocks[depth - 2 - branch].register_forward_hook(lambda m, a, o: seen.update(h=o))
    ref = unet(x, t, c, y)
    hook.remove()
    out, deep = unet_forward(LdmOps(unet, t, c, y), x, depth, branch)
    assert torch.equal(out, ref)
    assert deep is not None and deep.shape == seen["h"].shape, (None if deep is None else deep.shape, seen["h"].shape)
    assert torch.equal(deep, seen["h"])


@pytest.mark.parametrize("kind", ["sd15", "sdxl"])
@pytest.mark.parametrize("branch", [0, 1, 3])
@torch.no_grad()
def test_cached_step_on_own_feature_reproduces_full_output(kind, branch):
    unet = tiny_unet(kind)
    depth = len(unet.input_blocks)
    x, t, c, y = inputs(kind)
    full, deep = unet_forward(LdmOps(unet, t, c, y), x, depth, branch)
    cached, none = unet_forward(LdmOps(unet, t, c, y), x, depth, branch, deep=deep.clone())
    assert none is None
    assert torch.equal(cached, full)


@pytest.mark.parametrize("branch", [0, 2, 5])
@torch.no_grad()
def test_cached_step_runs_only_the_shallow_branch(branch):
    unet = tiny_unet("sd15")
    depth = 12
    ran = []
    for name, blocks in (("in", unet.input_blocks), ("out", unet.output_blocks)):
        for i, b in enumerate(blocks):
            b.register_forward_hook(lambda m, a, o, key=(name, i): ran.append(key))
    unet.middle_block.register_forward_hook(lambda m, a, o: ran.append(("mid", 0)))
    x, t, c, _ = inputs()
    _, deep = unet_forward(LdmOps(unet, t, c), x, depth, branch)
    assert len(ran) == 2 * depth + 1
    ran.clear()
    unet_forward(LdmOps(unet, t, c), x, depth, branch, deep=deep.clone())
    assert ran == [("in", i) for i in range(branch + 1)] + [("out", i) for i in range(depth - 1 - branch, depth)]
    # the stored feature is the input of output block L-1-b: it has that level's shape
    assert deep.shape[-1] == unet_forward_shape_at(unet, depth - 1 - branch, x, t, c)


def unet_forward_shape_at(unet, out_index, x, t, c):
    seen = {}
    h = unet.output_blocks[out_index].register_forward_pre_hook(lambda m, a: seen.update(x=a[0]) and None)
    unet(x, t, c)
    h.remove()
    return seen["x"].shape[-1]
