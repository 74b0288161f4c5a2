"""DeepCache inside a real Forge, over the HTTP API (launch.py --api --nowebui), as API users drive it.

Interval 1 must give exactly the image of DeepCache off (same seed, PNG pixels compared); interval 3
must give a finite, different image and print the per-pass summary line on the console; a bad
setting must not fail the generation and must say why DeepCache is off in the image's parameters.
"""
import numpy as np
import pytest
from forge_server import HIRES, skip_reason
from pixels import assert_same, encode_image, mad
from sd_webui import deepcache_args, deepcache_settings

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")


def assert_sane_and_different(img, ref, what):
    """A real picture (not a black/flat NaN image) that differs from the reference."""
    assert img.shape == ref.shape, f"{what}: shapes {img.shape} != {ref.shape}"
    assert img.std() > 2.0, f"{what}: flat image (std {img.std():.2f}), NaN latents decode like this"
    assert mad(img, ref) > 0.5, f"{what}: identical to the uncached image (mean abs diff {mad(img, ref):.3f})"


BASE3 = dict(interval=3, branch=0, schedule="uniform", start=0.0, end=1.0, off=None)


def init_image(size=64):
    """A smooth colour gradient with a disc, the img2img input."""
    yy, xx = np.mgrid[:size, :size] / (size - 1)
    disc = (np.hypot(yy - 0.5, xx - 0.5) < 0.3).astype(float)
    rgb = np.stack([xx, yy, 0.5 + 0.5 * disc], axis=2) * 255
    return rgb.clip(0, 255).astype(np.uint8)


# -- the extension loads -----------------------------------------------------------------------


def test_script_listed(api_server):
    scripts = api_server.request("/sdapi/v1/scripts")
    for tab in ("txt2img", "img2img"):
        assert "deepcache" in scripts[tab], f"DeepCache is not among the {tab} scripts: {scripts[tab]}"
    log = api_server.server_log()
    for line in log.splitlines():
        if "error loading script" in line.lower():
            assert "deepcache" not in line.lower(), line


def test_script_info(api_server):
    info = {(s["name"], s["is_img2img"]): s for s in api_server.request("/sdapi/v1/script-info")}
    assert ("deepcache", False) in info and ("deepcache", True) in info, sorted(info)
    s = info[("deepcache", False)]
    assert s["is_alwayson"]
    labels = [a.get("label") for a in s["args"]]
    assert len(labels) == 9, labels  # enabled, interval, branch, schedule, start, end, hr, hr interval, hr start


# -- txt2img ----------------------------------------------------------------------------------


def test_txt2img_interval1_is_exact(api_server):
    plain = api_server.txt2img()
    dc1 = api_server.txt2img(deepcache_args(interval=1))
    assert_same(dc1.image, plain.image, "txt2img interval 1 vs DeepCache off")
    assert deepcache_settings(plain.infotext) is None, plain.infotext
    # interval 1 caches nothing: no entry, or one that says interval 1 and is not off
    entry = deepcache_settings(dc1.infotext)
    assert entry is None or (entry.get("interval") == 1 and entry["off"] is None), dc1.infotext


def test_txt2img_interval3_differs_and_reports(api_server):
    plain = api_server.txt2img()
    dc3 = api_server.txt2img(deepcache_args(interval=3))
    assert_sane_and_different(dc3.image, plain.image, "txt2img interval 3")
    assert deepcache_settings(dc3.infotext) == BASE3, dc3.infotext
    assert deepcache_settings(dc3.png_parameters or "") == BASE3, dc3.png_parameters
    summaries = dc3.summaries()
    assert len(summaries) == 1, dc3.log[-3000:]
    full, cached, rest = summaries[0]
    assert (full, cached) == (3, 5), summaries  # 8 steps: F c c F c c F c
    assert "base pass" in rest, rest
    assert "Traceback" not in dc3.log, dc3.log[-4000:]


def test_txt2img_branch_and_schedule(api_server):
    """Another branch and the non-uniform schedule run too, and differ from branch 0 / uniform."""
    plain = api_server.txt2img()
    dc3 = api_server.txt2img(deepcache_args(interval=3))
    deeper = api_server.txt2img(deepcache_args(interval=3, branch=5, schedule="non-uniform"))
    assert_sane_and_different(deeper.image, plain.image, "txt2img interval 3 branch 5 non-uniform")
    assert mad(deeper.image, dc3.image) > 0.0, "branch 5 non-uniform gave the branch 0 uniform image"
    assert deepcache_settings(deeper.infotext) == dict(BASE3, branch=5, schedule="non-uniform"), deeper.infotext
    assert deeper.summaries(), deeper.log[-3000:]


# -- img2img ----------------------------------------------------------------------------------


def _img2img(server, scripts=None):
    return server.img2img(scripts, init_images=[encode_image(init_image())], denoising_strength=0.75)


def test_img2img_interval1_is_exact(api_server):
    plain = _img2img(api_server)
    dc1 = _img2img(api_server, deepcache_args(interval=1))
    assert_same(dc1.image, plain.image, "img2img interval 1 vs DeepCache off")


def test_img2img_interval3_differs_and_reports(api_server):
    plain = _img2img(api_server)
    dc3 = _img2img(api_server, deepcache_args(interval=3))
    assert_sane_and_different(dc3.image, plain.image, "img2img interval 3")
    assert deepcache_settings(dc3.infotext) == BASE3, dc3.infotext
    summaries = dc3.summaries()
    assert len(summaries) == 1, dc3.log[-3000:]
    full, cached, _ = summaries[0]
    # denoising 0.75 of 8 steps: int(0.75 * 8) + 1 = 7 steps run (sd_samplers_common.setup_img2img_steps)
    assert full + cached == 7 and full >= 1 and cached >= 1, summaries


# -- hires fix --------------------------------------------------------------------------------


def test_hires_interval1_is_exact(api_server):
    plain = api_server.txt2img(**HIRES)
    dc1 = api_server.txt2img(deepcache_args(interval=1, hr_enabled=True, hr_interval=1), **HIRES)
    assert plain.image.shape == (128, 128, 3), plain.image.shape
    assert_same(dc1.image, plain.image, "hires interval 1 (both passes) vs DeepCache off")


def test_hires_interval3_differs_and_reports_both_passes(api_server):
    plain = api_server.txt2img(**HIRES)
    dc3 = api_server.txt2img(deepcache_args(interval=3, hr_enabled=True, hr_interval=3), **HIRES)
    assert_sane_and_different(dc3.image, plain.image, "hires interval 3 (both passes)")
    assert deepcache_settings(dc3.infotext) == BASE3, dc3.infotext
    assert deepcache_settings(dc3.infotext, "DeepCache hires") == dict(interval=3, start=0.0, off=None), dc3.infotext
    summaries = dc3.summaries()
    assert len(summaries) == 2, dc3.log[-4000:]
    (bf, bc, brest), (hf, hc, hrest) = summaries
    assert "base pass" in brest and "hires pass" in hrest, summaries
    assert (bf, bc) == (3, 5), summaries
    assert hf + hc == HIRES["hr_second_pass_steps"] and hf >= 1 and hc >= 1, summaries


def test_hires_base_pass_only(api_server):
    """DeepCache on the base pass only: the hires pass runs uncached (one summary line)."""
    plain = api_server.txt2img(**HIRES)
    dc3 = api_server.txt2img(deepcache_args(interval=3, hr_enabled=False), **HIRES)
    assert_sane_and_different(dc3.image, plain.image, "hires, DeepCache on the base pass only")
    assert deepcache_settings(dc3.infotext, "DeepCache hires") is None, dc3.infotext
    summaries = dc3.summaries()
    assert len(summaries) == 1 and "base pass" in summaries[0][2], summaries


# -- bad settings -----------------------------------------------------------------------------


def test_interval0_does_not_fail_and_says_why(api_server):
    plain = api_server.txt2img()
    bad = api_server.txt2img(deepcache_args(interval=0))  # the API takes any number; the UI slider not
    assert bad.images, "no image"
    assert_same(bad.image, plain.image, "interval 0 (DeepCache off) vs DeepCache off")
    assert "Traceback" not in bad.log, bad.log[-4000:]
    assert "off for this generation" in bad.log, bad.log[-3000:]
    for where, text in (("infotext", bad.infotext), ("PNG parameters", bad.png_parameters or "")):
        entry = deepcache_settings(text)
        assert entry is not None, f"no DeepCache entry in the image's {where}: {text!r}"
        assert entry["off"] and "interval" in entry["off"], f"{where}: the reason is not given: {text!r}"
