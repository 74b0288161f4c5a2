"""DeepCache in a real A1111 (A1111_PATH), driven as API users drive it: POST /sdapi/v1/txt2img
and img2img with alwayson_scripts {"DeepCache": {"args": [...]}} (launch.py --nowebui).

Images are 64x64, 5 steps, seed 1234 (a1111_server.BASE); "the plain image" is that request
without DeepCache. Exactness is checked on the decoded PNG pixels.
"""
import re
import threading
import time
import warnings

import numpy as np
import pytest
from a1111_server import payload, skip_reason
from pixels import encode_image, mad
from sd_webui import deepcache_args, param_entry

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")

SECOND_ORDER = ["Heun", "DPM2", "DPM++ SDE", "DPM++ 2S a"]
FIRST_ORDER = ["Euler a", "DPM++ 2M", "DDIM", "UniPC"]


def _timesteps(steps):
    """len of the timesteps A1111 1.10 gives DDIM/UniPC (sd_samplers_timesteps.get_timesteps)."""
    return len(range(0, 1000, 1000 // steps))


# sampler steps (model evaluations, progress-bar steps) A1111 1.10 runs for `steps`:
# DDIM len(timesteps) - 1 (sd_samplers_timesteps_impl.ddim), UniPC len(timesteps)
# (unipc(): UniPC.sample(steps=len(timesteps)) evaluates the model that many times), others `steps`
STEPS_RUN = {"DDIM": lambda steps: _timesteps(steps) - 1, "UniPC": _timesteps}
SAMPLER_STEPS = 3  # DDIM then runs 3, UniPC 4, the others 3
# > 75 CLIP tokens: this prompt's cond has 154 tokens, the empty negative prompt 77
LONG = ", ".join(["a very detailed red and white striped lighthouse", "standing on a rugged granite cliff",
                  "huge stormy waves crashing below", "dramatic dark clouds", "golden evening light",
                  "seagulls flying around", "a small wooden fishing boat", "oil painting in the style of the old "
                  "masters", "thick impasto brush strokes", "warm and cold colour contrast", "highly detailed",
                  "masterpiece", "best quality", "sharp focus", "cinematic composition", "wide angle view",
                  "atmospheric perspective", "volumetric fog"])


def soft(condition, message):
    """A check on what the lead plans but does not promise yet: a warning, not a failure."""
    if not condition:
        warnings.warn(message, UserWarning, stacklevel=2)


def assert_entry(infotext, interval=3, branch=0, key="DeepCache"):
    """The image's parameters have a DeepCache entry with these settings that is not 'off'
    (only the tokens 'interval N' and 'branch N' are relied on, not the whole format)."""
    entry = param_entry(infotext, key)
    assert entry is not None, f"no {key!r} entry in the image's parameters: {infotext!r}"
    assert re.search(rf"\binterval {interval}\b", entry), entry
    if branch is not None:
        assert re.search(rf"\bbranch {branch}\b", entry), entry
    assert "off" not in entry, entry
    return entry


def assert_sane(img):
    assert img.dtype == np.uint8 and img.ndim == 3
    assert img.std() > 1.0, "the image is flat (NaN latents decode to a flat image)"


def assert_cached(result, passes=1, label="base pass"):
    """One summary line per sampling pass, each with cached steps, and DeepCache not off."""
    lines = [s for s in result.summaries() if label in s[2]]
    assert len(lines) == passes, f"expected {passes} '{label}' summary line(s), console:\n{result.log[-3000:]}"
    for full, cached, rest in lines:
        assert cached > 0 and full > 0, (full, cached, rest)
        assert "off" not in rest, rest
    assert "DeepCache is off" not in result.log, result.log[-3000:]
    assert "DeepCache failed" not in result.log, result.log[-3000:]
    return lines


@pytest.fixture(scope="module")
def reference_distance(servers):
    """How far apart two unrelated images (other seed) are: the scale of 'close'."""
    server = servers.get("api")
    other = server.txt2img(cache=True, seed=4321)
    return mad(server.plain().image, other.image)


def test_interval_1_is_the_uncached_image(api_server):
    plain = api_server.plain()
    assert_sane(plain.image)
    assert param_entry(plain.infotext) is None, plain.infotext
    r = api_server.txt2img(alwayson_scripts=deepcache_args(interval=1))
    assert np.array_equal(r.image, plain.image), f"interval 1 changed the image (MAD {mad(r.image, plain.image)})"
    entry = param_entry(r.infotext)
    assert entry is None or "off" in entry, f"interval 1 wrote a DeepCache entry that is not 'off': {entry!r}"
    assert not [s for s in r.summaries() if s[1] > 0], r.log


def test_summary_line_per_pass(api_server):
    r = api_server.txt2img(cache=True, alwayson_scripts=deepcache_args(interval=3))
    [(full, cached, rest)] = assert_cached(r)
    assert (full, cached) == (2, 3), f"5 steps at interval 3: F c c F c, got {full} full / {cached} cached"
    assert_entry(r.infotext)
    assert not np.array_equal(r.image, api_server.plain().image)
    soft("full / " in r.response.get("info", "") and "cached" in r.response.get("info", ""),
         "the run summary ('F full / C cached steps') is not in the API response's info JSON")


@pytest.mark.parametrize("sampler", SECOND_ORDER + FIRST_ORDER)
def test_sampler_interval_3(api_server, sampler, reference_distance):
    base = api_server.txt2img(sampler_name=sampler, steps=SAMPLER_STEPS)
    assert_sane(base.image)
    r = api_server.txt2img(sampler_name=sampler, steps=SAMPLER_STEPS, alwayson_scripts=deepcache_args(interval=3))
    assert_sane(r.image)
    [(full, cached, _)] = assert_cached(r)
    n = STEPS_RUN.get(sampler, lambda steps: steps)(SAMPLER_STEPS)
    want = (-(-n // 3), n - -(-n // 3))  # interval 3: F c c F ...
    assert (full, cached) == want, f"{sampler} runs {n} steps: expected {want[0]} full / {want[1]} cached, " \
                                   f"the summary says {full} full / {cached} cached"
    d = mad(r.image, base.image)
    print(f"{sampler}: MAD DeepCache vs uncached {d:.2f}, other seed {reference_distance:.2f}, "
          f"{base.seconds:.1f} s -> {r.seconds:.1f} s")
    assert d > 0, f"{sampler}: interval 3 gave exactly the uncached image"
    assert d < 0.25 * reference_distance, f"{sampler}: DeepCache image too far from the uncached one ({d:.2f})"


def test_img2img(api_server, reference_distance):
    init = encode_image(api_server.plain().image)
    body = payload(init_images=[init], denoising_strength=0.6)
    base = api_server.generate(body, "img2img")
    r = api_server.generate(dict(body, alwayson_scripts=deepcache_args(interval=3)), "img2img")
    assert_sane(r.image)
    assert_cached(r)
    assert_entry(r.infotext)
    d = mad(r.image, base.image)
    print(f"img2img: MAD DeepCache vs uncached {d:.2f}, other seed {reference_distance:.2f}")
    assert 0 < d < 0.5 * reference_distance, d  # measured 12.3 (other seed 60.7)


def test_hires_fix_base_and_hires_pass(api_server):
    hires = dict(enable_hr=True, hr_scale=2, hr_upscaler="Latent", hr_second_pass_steps=3, denoising_strength=0.6)
    r = api_server.txt2img(**hires, alwayson_scripts=deepcache_args(interval=3, hr_enabled=True, hr_interval=2))
    assert r.image.shape == (128, 128, 3)
    assert_sane(r.image)
    [(full, cached, _)] = assert_cached(r, label="base pass")
    assert (full, cached) == (2, 3)
    [(hfull, hcached, _)] = assert_cached(r, label="hires pass")
    assert (hfull, hcached) == (2, 1), "3 hires steps at interval 2: F c F"
    assert_entry(r.infotext)
    assert_entry(r.infotext, interval=2, branch=None, key="DeepCache hires")
    soft(r.response.get("info", "").count("cached steps") >= 2,
         "the run summaries of both passes are not in the API response's info JSON")


def test_batch_with_prompts_of_different_lengths(api_server):
    # prompt matrix "a|LONG|b": 4 prompts of 2..>75 tokens, batch_size 2 -> n_iter 2, and the
    # cond (154 tokens) and uncond (77) chunks of a batch go through the U-Net in separate calls
    r = api_server.txt2img(prompt=f"a lighthouse|{LONG}|at night", batch_size=2, n_iter=2,
                           script_name="prompt matrix", script_args=[False, False, "positive", "comma", 0],
                           alwayson_scripts=deepcache_args(interval=3))
    prompts = r.info["all_prompts"]
    assert len(prompts) == 4 and len(r.images) == 5, (prompts, len(r.images))  # grid + 4
    assert_cached(r, passes=2)
    for img in r.images[1:]:
        assert_sane(img)


def test_interrupt_then_rerun(api_server):
    before = api_server.plain()
    dc_before = api_server.txt2img(cache=True, alwayson_scripts=deepcache_args(interval=3))
    box = {}

    def long_run():
        try:
            box["result"] = api_server.txt2img(steps=40, alwayson_scripts=deepcache_args(interval=3))
        except Exception as e:  # reported below
            box["error"] = e

    t = threading.Thread(target=long_run)
    t.start()
    deadline = time.time() + 300
    while time.time() < deadline:
        state = api_server.request("/sdapi/v1/progress?skip_current_image=true", timeout=30).get("state", {})
        if state.get("sampling_step", 0) >= 4 and state.get("job_count", 0) > 0:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the long generation did not start sampling")
    api_server.request("/sdapi/v1/interrupt", {})
    t.join(600)
    assert not t.is_alive(), "the interrupted generation did not return"
    assert "error" not in box, box.get("error")
    interrupted = box["result"]
    full, cached = sum(s[0] for s in interrupted.summaries()), sum(s[1] for s in interrupted.summaries())
    assert full + cached < 40, f"not interrupted: {full} full / {cached} cached"
    after = api_server.txt2img()
    assert np.array_equal(after.image, before.image), "a plain generation after the interrupt is not the same"
    assert not after.summaries()
    dc_after = api_server.txt2img(alwayson_scripts=deepcache_args(interval=3))
    assert np.array_equal(dc_after.image, dc_before.image), "DeepCache after the interrupt is not the same"


@pytest.mark.parametrize("settings,word", [(dict(interval=0), "interval"), (dict(schedule="bogus"), "schedule"),
                                           (dict(branch=99), "branch")],
                         ids=["interval-0", "schedule-bogus", "branch-99"])
def test_bad_settings_turn_deepcache_off_with_reason(api_server, settings, word):
    plain2 = api_server.txt2img(cache=True, steps=2)
    r = api_server.txt2img(steps=2, alwayson_scripts=deepcache_args(**settings))
    assert np.array_equal(r.image, plain2.image), "DeepCache off must give the uncached image"
    entry = param_entry(r.infotext)
    assert entry is not None, f"no DeepCache entry in the image's parameters: {r.infotext!r}"
    assert "off" in entry, f"the DeepCache entry does not say it is off: {entry!r}"
    reason = entry.split("off", 1)[1].lower()
    assert word in reason, f"the reason does not name the {word}: {entry!r}"
    assert "DeepCache is off" in r.log, r.log[-2000:]
