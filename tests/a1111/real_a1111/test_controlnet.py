"""DeepCache together with sd-webui-controlnet (A1111_PATH/extensions/sd-webui-controlnet) and the
random SD1.5 ControlNet of tests/a1111/make_controlnet.py, preprocessor "none", over the API.

The runs are made once per module, in this order: a warm-up (ControlNet + DeepCache interval 1,
which also loads the ControlNet model), ControlNet alone, ControlNet + DeepCache interval 3, ...;
the two timed runs are both warm.
"""
import numpy as np
import pytest
from a1111_server import controlnet_installed, skip_reason
from pixels import control_image, encode_image, mad
from sd_webui import controlnet_model, controlnet_unit, deepcache_args, param_entry

reason = skip_reason() or (None if controlnet_installed() else "sd-webui-controlnet is not installed in A1111_PATH")
pytestmark = pytest.mark.skipif(reason is not None, reason=reason or "")


class Runs:
    """The module's generations by name; each runs once (the server's request cache keeps its result)."""

    def __init__(self, server):
        self.server = server
        self.model = controlnet_model(server)
        self.image = encode_image(control_image())

    def unit(self, **overrides):
        return controlnet_unit("none", self.model, self.image, **overrides)

    def get(self, name):
        recipes = {
            "warmup_dc1": lambda: {**self.unit(), **deepcache_args(interval=1)},
            "cn": lambda: self.unit(),
            "cn_dc3": lambda: {**self.unit(), **deepcache_args(interval=3)},
            "dc3": lambda: deepcache_args(interval=3),
            "cn_late_dc20": lambda: {**self.unit(guidance_start=0.3), **deepcache_args(interval=20)},
            "cn_late_w0_dc20": lambda: {**self.unit(guidance_start=0.3, weight=0.0),
                                        **deepcache_args(interval=20)},
            "dc20": lambda: deepcache_args(interval=20),
        }
        if name == "cn":
            self.get("warmup_dc1")  # load the ControlNet model before the timed run (a no-op once it ran)
        return self.server.txt2img(cache=True, alwayson_scripts=recipes[name]())


@pytest.fixture(scope="module")
def runs(servers):
    return Runs(servers.get("api"))


def not_off(result):
    assert "DeepCache is off" not in result.log, result.log[-3000:]
    entry = param_entry(result.infotext)
    assert entry is not None and "off" not in entry, f"DeepCache entry {entry!r} in {result.infotext!r}"
    lines = result.summaries()
    assert len(lines) == 1 and lines[0][1] > 0, f"summary lines {lines}:\n{result.log[-3000:]}"
    return lines[0]


def test_controlnet_interval_1_is_controlnet_alone(runs, api_server):
    cn, dc1 = runs.get("cn"), runs.get("warmup_dc1")
    assert "ControlNet" in cn.infotext, cn.infotext
    assert mad(cn.image, api_server.plain().image) > 1.0, "the control image changes nothing: test model too weak"
    assert np.array_equal(dc1.image, cn.image), f"interval 1 + ControlNet != ControlNet alone " \
                                                 f"(MAD {mad(dc1.image, cn.image):.3f})"


def test_controlnet_with_deepcache_interval_3(runs):
    r, dc3, cn = runs.get("cn_dc3"), runs.get("dc3"), runs.get("cn")
    full, cached, _ = not_off(r)
    assert (full, cached) == (2, 3)
    assert "ControlNet" in r.infotext, r.infotext
    d = mad(r.image, dc3.image)
    print(f"ControlNet + DeepCache vs DeepCache alone: MAD {d:.2f}; vs ControlNet alone: {mad(r.image, cn.image):.2f}")
    assert d > 1.0, f"ControlNet + DeepCache is (almost) DeepCache alone (MAD {d:.3f}): control dropped"
    assert not np.array_equal(r.image, cn.image), "interval 3 + ControlNet gave the uncached image"


def test_cached_steps_use_the_control_residuals(runs):
    # control only on later steps (ControlNet's percent i/5 >= 0.3: steps 2, 3, 4); interval 20 over
    # 5 steps: step 0 full, every step with control a cached step
    r, dc20 = runs.get("cn_late_dc20"), runs.get("dc20")
    full, cached, _ = not_off(r)
    assert (full, cached) == (1, 4), (full, cached)
    d = mad(r.image, dc20.image)
    # the floor: the same run with control weight 0 (the ControlNet runs, its residuals are zeros)
    floor_run = runs.get("cn_late_w0_dc20")
    not_off(floor_run)
    floor = mad(floor_run.image, dc20.image)
    print(f"ControlNet from 0.3 + DeepCache interval 20 vs DeepCache interval 20 alone: MAD {d:.3f} "
          f"(weight 0: {floor:.3f})")
    assert floor < 0.05, f"ControlNet at weight 0 changed the DeepCache image (MAD {floor:.3f})"
    assert d > max(0.05, 5 * floor), f"control on cached steps changed (almost) nothing (MAD {d:.4f}, " \
                                    f"weight 0: {floor:.4f}): residuals dropped on cached steps?"


def test_controlnet_speed_up(runs):
    cn, cn_dc3 = runs.get("cn"), runs.get("cn_dc3")
    ratio = cn.seconds / cn_dc3.seconds
    print(f"ControlNet alone {cn.seconds:.1f} s, ControlNet + DeepCache interval 3 {cn_dc3.seconds:.1f} s: "
          f"x{ratio:.2f}")
    assert cn_dc3.seconds < cn.seconds, f"no speed-up with ControlNet: x{ratio:.2f}"
