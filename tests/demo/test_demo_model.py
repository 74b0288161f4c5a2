"""The embedded demo model: shipped weights, the sampler loop over the core, the demo command."""
import os

import pytest
import torch

from deepcache_plugin.core import DeepCacheConfig, Mode
from deepcache_plugin.demo.model import (
    DEMO_DIGITS,
    IMAGE_SIZE,
    NULL_LABEL,
    WEIGHTS_PATH,
    build_model,
    ddim_sigmas,
    load_model,
    sigma_to_t,
)
from deepcache_plugin.demo.sampling import cost_fractions, psnr, sample_euler
from deepcache_plugin.demo.unet import SpatialTransformer


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return load_model()


def test_shipped_weights_are_small_and_load(model):
    assert os.path.getsize(WEIGHTS_PATH) < 5e6
    from safetensors.torch import load_file
    state = load_file(WEIGHTS_PATH)
    assert set(state) == set(build_model().state_dict())
    assert all(v.dtype == torch.float16 for v in state.values())
    assert len(model.input_blocks) == len(model.output_blocks) == 12
    assert any(isinstance(m, SpatialTransformer) for m in model.modules())
    assert model.num_classes == DEMO_DIGITS["num_classes"]


def test_sigmas_are_ddim_timesteps():
    s = ddim_sigmas(50)
    assert len(s) == 51 and s[-1] == 0 and torch.all(s[:-1] > s[1:])
    t = sigma_to_t(s[:-1])
    assert torch.allclose(t, torch.tensor([999.0 - 20 * i for i in range(50)]), atol=1e-2)


def _inputs(n=4):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, IMAGE_SIZE, IMAGE_SIZE, generator=g), torch.arange(n) % 10


def test_interval_1_is_the_plain_forward(model):
    noise, labels = _inputs()
    sig = ddim_sigmas(6)
    base = sample_euler(model, noise, labels, sig, sigma_to_t=sigma_to_t)
    off = sample_euler(model, noise, labels, sig, sigma_to_t=sigma_to_t, config=DeepCacheConfig(interval=1))
    assert torch.equal(base.images, off.images)
    assert set(off.modes) == {Mode.PASSTHROUGH}


def test_deepcache_uses_the_cache_and_stays_close(model):
    noise, labels = _inputs()
    sig = ddim_sigmas(9)
    base = sample_euler(model, noise, labels, sig, sigma_to_t=sigma_to_t)
    dc = sample_euler(model, noise, labels, sig, sigma_to_t=sigma_to_t, config=DeepCacheConfig(interval=3))
    assert dc.modes == [Mode.FULL, Mode.CACHED, Mode.CACHED] * 3
    assert (dc.summary.full_calls, dc.summary.cached_calls) == (3, 6)
    assert dc.summary.measured.cached_seconds > 0 and dc.summary.speedup is not None
    assert 15 < psnr(dc.images, base.images) < 100


def test_guidance_keeps_cond_and_uncond_apart(model):
    noise, labels = _inputs(2)
    sig = ddim_sigmas(4)
    cfg = DeepCacheConfig(interval=2, branch=1)
    res = sample_euler(model, noise, labels, sig, sigma_to_t=sigma_to_t, config=cfg, guidance=2.0,
                       null_label=NULL_LABEL)
    assert res.modes == [Mode.FULL, Mode.CACHED, Mode.FULL, Mode.CACHED]
    assert torch.isfinite(res.images).all()


def test_cost_fractions_grow_with_branch(model):
    f = cost_fractions(model, torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE), torch.zeros(1),
                       y=torch.zeros(1, dtype=torch.long))
    assert len(f) == 12 and 0 < f[0] < f[1] < f[3] < 1


def test_demo_command_runs(tmp_path):
    from deepcache_plugin.demo.__main__ import main
    out, js = tmp_path / "demo.png", tmp_path / "demo.json"
    assert main(["--per-class", "1", "--steps", "6", "--repeats", "1", "--out", str(out), "--json", str(js)]) == 0
    import json
    r = json.loads(js.read_text())
    assert out.stat().st_size > 1000
    assert (r["full_evals"], r["cached_evals"]) == (2, 4)
    assert r["samples"] == 10 and 0 <= r["accuracy_deepcache"] <= 1 and r["wall_time_ratio"] > 0


def test_generated_digits_are_recognisable(model):
    """A small batch at the full schedule: most samples show the requested digit."""
    from deepcache_plugin.demo.__main__ import DEFAULT_GUIDANCE, make_inputs
    from deepcache_plugin.demo.data import DigitClassifier
    noise, labels = make_inputs(2, seed=3)
    res = sample_euler(model, noise, labels, ddim_sigmas(25), sigma_to_t=sigma_to_t,
                       guidance=DEFAULT_GUIDANCE, null_label=NULL_LABEL)
    assert DigitClassifier().accuracy(res.images, labels) >= 0.7
