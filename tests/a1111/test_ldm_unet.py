"""The A1111 adapter on the real ldm UNetModel class A1111 uses for SD1.x/SD2.x
(from stable-diffusion-sdkit), driven by the stand-in process_images."""
import a1111_harness as E  # stubs/ (on sys.path from conftest.py)
import pytest
import torch
from fake_model import FakeSDModel

ext = E.load_extension()
pytestmark = pytest.mark.usefixtures("fresh_host_state")


@pytest.fixture(scope="module")
def model():
    return FakeSDModel(E.tiny_ldm_unet())


def summaries(p):
    return p._deepcache_job.summaries


def assert_clean(model, p=None):
    unet = model.model.diffusion_model
    assert "forward" not in vars(unet)
    assert E.package("core").shared_store(unet).open_runs == 0
    if p is not None and p.sampler is not None:
        assert not hasattr(p.sampler.func, "_deepcache_original")


def run_patched(unet, interval, sigmas, steps):
    """A DeepCache run of `interval` with the ldm patch installed on unet: one evaluation per step
    (x, t, context), with the sampler's callback after each but the last. Returns (the run's state, outputs)."""
    core, hook, host = E.package("core"), E.package("a1111.sampler_hook"), E.package("a1111.a1111_host")
    state = core.RunState(core.DeepCacheConfig(interval=interval), sigmas, 12, core.shared_store(unet).open_run())
    run = hook.SamplerRun(state)
    patch = host.LdmPatch(unet, 0, run)
    patch.install()
    outputs = []
    try:
        for i, (x, t, c) in enumerate(steps):
            if i:
                state.on_callback(i - 1)
            run.begin_evaluation()
            outputs.append(unet(x, t, context=c))
    finally:
        patch.remove()
        state.close()
    return state, outputs


def test_full_step_is_bit_identical_to_ldm_forward(model):
    unet = model.model.diffusion_model
    g = torch.Generator().manual_seed(3)
    x, t, c = torch.randn(2, 4, 8, 8, generator=g), torch.full((2,), 700.0), torch.randn(2, 7, 24, generator=g)
    with torch.no_grad():
        expected = unet(x, t, context=c)
        x2 = x + 0.5 * torch.randn(x.shape, generator=g)
        expected2 = unet(x2, t, context=c)
        state, (full, cached, cached_on_own) = run_patched(unet, 3, [5.0, 2.0, 1.0, 0.0],
                                                           [(x, t, c), (x2, t, c), (x, t, c)])
    assert state.full_calls == 1 and state.cached_calls == 2
    assert torch.equal(cached_on_own, expected)  # the shallow branch on its own deep feature: exact
    assert torch.equal(full, expected)
    # x2's shallow blocks on x's deep feature: not x2's full output
    assert not torch.allclose(cached, expected2, atol=1e-3)
    assert "forward" not in vars(unet)


def test_uses_the_hosts_resizing_cat(model, monkeypatch):
    """A1111 swaps openaimodel.th for one whose cat resizes skips (sizes not a multiple of 64)."""
    m = E.ldm_openaimodel()

    class Hijack:
        def __getattr__(self, name):
            return getattr(torch, name)

        def cat(self, tensors, *args, **kwargs):
            a, b = tensors
            if a.shape[-2:] != b.shape[-2:]:
                a = torch.nn.functional.interpolate(a, b.shape[-2:], mode="nearest")
            return torch.cat([a, b], *args, **kwargs)

    monkeypatch.setattr(m, "th", Hijack())
    unet = model.model.diffusion_model
    x, t, c = torch.randn(2, 4, 9, 9), torch.full((2,), 300.0), torch.randn(2, 7, 24)
    with torch.no_grad():
        expected = unet(x, t, context=c)
        state, (out, cached) = run_patched(unet, 2, [5.0, 1.0, 0.0], [(x, t, c), (x, t, c)])
    assert torch.equal(out, expected) and torch.equal(cached, expected)
    assert state.cached_calls == 1 and state.disabled_reason is None


def test_interval_1_gives_the_unpatched_image(model):
    _, base = E.generate(ext, model, None, steps=6)
    p, one = E.generate(ext, model, E.script_args(interval=1), steps=6)
    assert torch.equal(base.images, one.images)
    assert_clean(model, p)


def test_cached_generation_and_restore_after_success(model):
    _, base = E.generate(ext, model, None, steps=9)
    p, out = E.generate(ext, model, E.script_args(interval=3), steps=9)
    (label, s), = summaries(p)
    assert (label, s.full_steps, s.cached_steps, s.disabled_reason) == ("base pass", 3, 6, None)
    assert out.images.shape == base.images.shape and torch.isfinite(out.images).all()
    assert not torch.equal(out.images, base.images)
    assert "DeepCache: interval 3, branch 0, schedule uniform, start 0.00, end 1.00" in out.infotext
    assert "base pass" in out.comments and "measured" in out.comments
    assert_clean(model, p)


def test_restored_after_an_error_and_next_generation_is_clean(model, monkeypatch):
    from modules import sd_samplers

    def failing_callback(self, d):
        if d["i"] == 2:
            raise RuntimeError("boom")

    with monkeypatch.context() as mp:
        mp.setattr(sd_samplers.Sampler, "callback_state", failing_callback)
        with pytest.raises(RuntimeError, match="boom"):
            E.generate(ext, model, E.script_args(interval=3), steps=6)
    assert_clean(model)
    _, a = E.generate(ext, model, E.script_args(interval=3), steps=6)
    _, b = E.generate(ext, model, E.script_args(interval=3), steps=6)
    assert torch.equal(a.images, b.images)


def test_restored_after_interrupt(model):
    from modules import shared
    shared.state.interrupt_at = 2
    p, out = E.generate(ext, model, E.script_args(interval=2), steps=8)
    (_, s), = summaries(p)
    assert s.steps == 3  # steps 0..2 ran, then the interrupt stopped sampling
    assert_clean(model, p)


@pytest.mark.parametrize("sampler,modes", [
    # Heun evaluates twice per step (once in the last) and calls back between the two:
    # both evaluations of a refresh step are full, both of a cached step cached
    ("Heun", "FF CC CC FF CC CC F"),
    ("Euler", "F C C F C C F"),
])
def test_sampler_steps_not_model_calls(model, monkeypatch, sampler, modes):
    run_module = E.package("core.run")
    seen = []
    decide = run_module.RunState.decide

    def recording(self, keys):
        mode = decide(self, keys)
        seen.append(mode.value[0].upper())
        return mode

    monkeypatch.setattr(run_module.RunState, "decide", recording)
    p, _ = E.generate(ext, model, E.script_args(interval=3), steps=7, sampler_name=sampler)
    assert "".join(seen) == modes.replace(" ", "")
    (_, s), = summaries(p)
    assert (s.full_steps, s.cached_steps) == (3, 4)


def test_img2img_runs_its_own_step_count(model):
    init = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    p, _ = E.generate(ext, model, E.script_args(interval=3), img2img=True, steps=10, denoising_strength=0.5,
                      init_latent=init)
    (_, s), = summaries(p)
    assert (s.steps, s.full_steps, s.cached_steps) == (6, 2, 4)  # int(0.5*10)+1 steps, refresh at 0 and 3


def test_hires_pass_has_its_own_settings(model):
    args = E.script_args(interval=3, hr_enabled=True, hr_interval=2)
    p, out = E.generate(ext, model, args, steps=6, enable_hr=True, hr_second_pass_steps=4)
    (base_label, base), (hr_label, hr) = summaries(p)
    assert (base_label, base.full_steps, base.cached_steps) == ("base pass", 2, 4)
    assert (hr_label, hr.steps, hr.full_steps, hr.cached_steps) == ("hires pass", 4, 2, 2)
    assert out.images.shape[-1] == 16
    assert "DeepCache hires: interval 2, start 0.00" in out.infotext
    assert "(hires pass)" in out.comments
    p, _ = E.generate(ext, model, E.script_args(interval=3), steps=6, enable_hr=True, hr_second_pass_steps=4)
    assert [label for label, _ in summaries(p)] == ["base pass"]
    assert_clean(model, p)


def test_separate_cond_uncond_calls_use_separate_caches(model):
    from modules import shared
    _, batched = E.generate(ext, model, E.script_args(interval=3), steps=6)
    shared.opts.batch_cond_uncond = False  # one U-Net call for cond rows, one for uncond rows
    p, split = E.generate(ext, model, E.script_args(interval=3), steps=6)
    (_, s), = summaries(p)
    assert s.cached_calls == 2 * 4 and s.disabled_reason is None
    assert torch.allclose(split.images, batched.images, atol=1e-4)


def test_batch_shape_changes_between_steps(model):
    """skip_early_cond drops the uncond rows on early steps (aria1th #7: size mismatch)."""
    from modules import shared
    shared.opts.skip_early_cond = 0.3
    p, out = E.generate(ext, model, E.script_args(interval=3, enabled=True), steps=9, batch_size=2)
    (_, s), = summaries(p)
    assert s.disabled_reason is None and s.cached_calls > 0 and torch.isfinite(out.images).all()


def test_summary_is_measured(model):
    p, _ = E.generate(ext, model, E.script_args(interval=3), steps=6)
    (_, s), = summaries(p)
    assert s.measured is not None and s.speedup is not None and s.measured.cached_seconds > 0
