"""DeepCache together with Forge's built-in ControlNet (extensions-builtin/sd_forge_controlnet) and the
random SD1.5 ControlNet of tests/a1111/make_controlnet.py, preprocessor "None", over the API.

Forge's ControlNet does not replace the U-Net forward: it is a patch on the UnetPatcher whose
residuals reach the U-Net through c['control']. DeepCache stays on with it and must add the
residuals of the blocks that run on cached steps, so ControlNet changes cached steps too.
"""
import pytest
from forge_server import builtin_controlnet_installed, skip_reason
from pixels import assert_same, control_image, encode_image, mad
from sd_webui import controlnet_model, controlnet_unit, deepcache_args, deepcache_settings

reason = skip_reason() or (None if builtin_controlnet_installed()
                           else "FORGE_PATH has no extensions-builtin/sd_forge_controlnet")
pytestmark = pytest.mark.skipif(reason is not None, reason=reason or "")


@pytest.fixture
def cn(api_server):
    """cn(**overrides): the ControlNet unit (preprocessor "None", the control image) as alwayson_scripts."""
    model, image = controlnet_model(api_server), encode_image(control_image())
    return lambda **overrides: controlnet_unit("None", model, image, **overrides)


def test_controlnet_changes_the_image(api_server, cn):
    """The sanity check the others build on: the random ControlNet does act."""
    plain = api_server.txt2img()
    with_cn = api_server.txt2img(cn())
    assert "ControlNet" in with_cn.infotext, with_cn.infotext
    assert mad(with_cn.image, plain.image) > 0.5, "ControlNet did not change the image"


def test_interval1_with_controlnet_is_exact(api_server, cn):
    with_cn = api_server.txt2img(cn())
    both = api_server.txt2img({**cn(), **deepcache_args(interval=1)})
    assert_same(both.image, with_cn.image, "ControlNet + interval 1 vs ControlNet alone")
    entry = deepcache_settings(both.infotext)
    assert entry is None or (entry.get("interval") == 1 and entry["off"] is None), both.infotext


def test_controlnet_reaches_cached_steps(api_server, cn):
    """Interval 3 with ControlNet differs from interval 3 without it, and DeepCache stayed on."""
    dc3 = api_server.txt2img(deepcache_args(interval=3))
    both = api_server.txt2img({**cn(), **deepcache_args(interval=3)})
    with_cn = api_server.txt2img(cn())
    assert both.image.std() > 2.0, "flat image"
    d_cn, d_dc = mad(both.image, dc3.image), mad(both.image, with_cn.image)
    assert d_cn > 0.5, f"ControlNet had no effect under DeepCache interval 3 (mean abs diff {d_cn:.3f})"
    assert d_dc > 0.5, f"DeepCache had no effect with ControlNet (mean abs diff {d_dc:.3f})"
    assert deepcache_settings(both.infotext) == dict(interval=3, branch=0, schedule="uniform", start=0.0, end=1.0,
                                                     off=None), both.infotext
    assert [(f, c) for f, c, _ in both.summaries()] == [(3, 5)], both.log[-3000:]
    assert "off for this generation" not in both.log, both.log[-3000:]


def test_late_controlnet_on_cached_steps_only(api_server, cn):
    """ControlNet from halfway (guidance start 0.5) and interval 8 of 8 steps: step 0 is the only
    full step, so ControlNet acts on cached steps only, and must still change the image."""
    dc8 = api_server.txt2img(deepcache_args(interval=8))
    late = api_server.txt2img({**cn(guidance_start=0.5), **deepcache_args(interval=8)})
    assert [(f, c) for f, c, _ in late.summaries()] == [(1, 7)], late.log[-3000:]
    assert [(f, c) for f, c, _ in dc8.summaries()] == [(1, 7)], dc8.log[-3000:]
    assert late.image.std() > 2.0, "flat image"
    diff = mad(late.image, dc8.image)
    assert diff > 0.2, \
        f"ControlNet from 0.5 did not change an image whose later steps are all cached (mean abs diff {diff:.3f})"
