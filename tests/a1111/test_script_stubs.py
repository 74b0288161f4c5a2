"""The A1111 script against stand-ins for the web UI: UI, settings, infotext and
paste fields, X/Y/Z axes, messages when DeepCache turns itself off, install.py,
the tab. U-Nets: the demo's SD1.5/SDXL block layouts (no ldm needed)."""
import copy
import importlib.util
import sys
import types

import a1111_harness as E  # stubs/ (on sys.path from conftest.py)
import pytest
import torch
from fake_model import FakeSDModel

ext = E.load_extension()
pytestmark = pytest.mark.usefixtures("fresh_host_state")


@pytest.fixture(scope="module")
def sd15():
    return FakeSDModel(E.tiny_demo_unet("sd15"))


@pytest.fixture(scope="module")
def sdxl():
    model = FakeSDModel(E.tiny_demo_unet("sdxl"))
    model.y_dim = 20
    return model


def test_registers_script_and_callbacks():
    from modules import script_callbacks, scripts
    assert issubclass(ext.DeepCacheScript, scripts.Script)
    assert ext.DeepCacheScript().show(False) is scripts.AlwaysVisible
    assert {k for k, v in script_callbacks.callbacks.items() if v} == {
        "ui_settings", "ui_tabs", "before_ui", "cfg_denoiser", "script_unloaded"}


def test_settings_section_and_ui_defaults():
    import gradio
    from modules import script_callbacks, shared
    script_callbacks.callbacks["ui_settings"][0]()
    labels = shared.opts.data_labels
    assert {k for k in labels if k.startswith("deepcache_")} == {p.setting for p in E.package("a1111.params").PARAMS}
    assert all(info.section == ("deepcache", "DeepCache") for k, info in labels.items() if k.startswith("deepcache"))
    shared.opts.deepcache_interval = 5
    shared.opts.deepcache_enable = True
    script = ext.DeepCacheScript()
    components = script.ui(False)
    names = E.package("a1111.params").ARG_NAMES
    assert len(components) == len(names) == len(script.infotext_fields)
    values = dict(zip(names, (c.value for c in components)))
    assert values["interval"] == 5 and values["enabled"] is True and values["schedule"] == "uniform"
    script.is_img2img = True
    hidden_rows = [c for c in gradio.built if type(c).__name__ == "Component" and c.visible is False]
    script.ui(True)
    assert len([c for c in gradio.built if type(c).__name__ == "Component" and c.visible is False]) > len(hidden_rows)


def test_infotext_round_trip_through_paste_fields(sd15):
    args = E.script_args(interval=4, branch=2, schedule="non-uniform", start=0.1, end=0.9,
                         hr_enabled=True, hr_interval=2, hr_start=0.25)
    p, out = E.generate(ext, sd15, args, steps=4, enable_hr=True, hr_second_pass_steps=2)
    params = dict(p.extra_generation_params)
    script = ext.DeepCacheScript()
    components = script.ui(False)
    pasted = [fn(params) for _, fn in script.infotext_fields]
    expected = [True, 4, 2, "non-uniform", 0.1, 0.9, True, 2, 0.25]
    assert pasted == expected
    assert len(components) == len(pasted)
    # parameters of an image made without DeepCache turn it off and leave the rest
    assert [fn({"Steps": "20"}) for _, fn in script.infotext_fields] == [False, None, None, None, None, None,
                                                                       False, None, None]


def test_xyz_axes_apply_to_the_cell_copy_only(sd15):
    from modules import scripts

    class AxisOption:
        def __init__(self, label, type, apply, format_value=None, confirm=None, cost=0.0, choices=None):
            self.label, self.type, self.apply, self.choices = label, type, apply, choices

    xyz = types.SimpleNamespace(AxisOption=AxisOption, axis_options=[])
    cls = type("Script", (), {"__module__": "xyz_grid.py"})
    scripts.scripts_data[:] = [scripts.ScriptClassData(cls, "xyz_grid.py", "", xyz)]
    try:
        register = E.package("a1111.params").register_axes
        assert register() and register()  # a second UI reload adds nothing
    finally:
        scripts.scripts_data.clear()
    labels = [o.label for o in xyz.axis_options]
    assert labels == ["[DeepCache] Enabled", "[DeepCache] Cache interval", "[DeepCache] Cache branch"]
    from modules import processing
    p = processing.StableDiffusionProcessingTxt2Img(sd_model=sd15, steps=6)
    cell = copy.copy(p)  # what xyz_grid processes for one cell
    xyz.axis_options[1].apply(cell, 2, [2, 3])
    assert cell.deepcache_interval == 2 and cell.deepcache_enabled is True
    assert not hasattr(p, "deepcache_interval")  # the user's p is untouched after the grid
    params = E.package("a1111.params")
    choices = params.choices_from_values(params.values_from_args(E.script_args(enabled=False, interval=5), cell))
    assert choices.enabled and choices.base.interval == 2
    xyz.axis_options[0].apply(cell, "False", ["True", "False"])
    assert not params.choices_from_values(params.values_from_args(E.script_args(), cell)).enabled


def test_a_forward_replaced_by_controlnet_runs_on_every_step_and_caches(sd15):
    """sd-webui-controlnet replaces the U-Net forward with its own loop over the blocks: DeepCache
    runs through it (the real extension is tested in the real web UI, tests/a1111/real_a1111)."""
    unet = sd15.model.diffusion_model
    calls = []
    original = unet.forward

    def forward_webui(x, timesteps=None, context=None, **kwargs):
        calls.append(x.shape[0])
        return original(x, timesteps, context, **kwargs)

    unet._original_forward = original
    unet.forward = forward_webui
    try:
        _, without = E.generate(ext, sd15, None, steps=6)
        n = len(calls)
        p, out = E.generate(ext, sd15, E.script_args(interval=3), steps=6)
        assert vars(unet)["forward"] is forward_webui  # ControlNet's forward is back in place
    finally:
        del unet.forward, unet._original_forward
    assert len(calls) == 2 * n  # the replaced forward answered every call, cached ones too
    (_, s), = p._deepcache_job.summaries
    assert (s.full_steps, s.cached_steps, s.disabled_reason) == (2, 4, None)
    assert not torch.equal(out.images, without.images)


def test_branch_beyond_sdxl_is_a_clear_message(sdxl):
    _, base = E.generate(ext, sdxl, None, steps=4)
    p, out = E.generate(ext, sdxl, E.script_args(interval=2, branch=10), steps=4)
    assert "cache_branch 10 does not exist in this U-Net: it has 9 skip branches" in out.comments
    assert "(off: cache_branch 10 does not exist" in p.extra_generation_params["DeepCache"]
    assert torch.equal(out.images, base.images) and "forward" not in vars(sdxl.model.diffusion_model)


def test_sdxl_caches(sdxl):
    p, out = E.generate(ext, sdxl, E.script_args(interval=2, branch=1), steps=4, batch_size=2)
    (_, s), = p._deepcache_job.summaries
    assert (s.full_steps, s.cached_steps, s.disabled_reason) == (2, 2, None)


@pytest.mark.parametrize("bad,message", [
    (dict(interval=2.5), "cache interval must be a whole number"),
    (dict(start=0.8, end=0.2), "must not be after end_percent"),
])
def test_bad_input_message_and_model_untouched(sd15, bad, message):
    _, base = E.generate(ext, sd15, None, steps=4)
    p, out = E.generate(ext, sd15, E.script_args(**bad), steps=4)
    assert message in out.comments
    assert torch.equal(out.images, base.images)
    assert p.extra_generation_params["DeepCache"].startswith("off (") and message in p.extra_generation_params[
        "DeepCache"]


def test_sampler_without_fixed_schedule_is_reported(sd15):
    _, base = E.generate(ext, sd15, None, steps=4, sampler_name="DPM adaptive")
    p, out = E.generate(ext, sd15, E.script_args(), steps=4, sampler_name="DPM adaptive")
    assert "the DPM adaptive sampler has no fixed step schedule" in out.comments
    assert "(off: the DPM adaptive sampler" in p.extra_generation_params["DeepCache"]
    assert torch.equal(out.images, base.images)


def test_timestep_sampler_caches(sd15):
    p, out = E.generate(ext, sd15, E.script_args(interval=3), steps=10, sampler_name="DDIM")
    (_, s), = p._deepcache_job.summaries
    assert (s.steps, s.full_steps, s.cached_steps) == (9, 3, 6)  # DDIM runs len(timesteps)-1 steps


def test_unipc_counts_each_evaluation_as_a_step(sd15):
    # its callbacks come one evaluation late: steps follow the evaluations, not the callbacks
    p, out = E.generate(ext, sd15, E.script_args(interval=2), steps=4, sampler_name="UniPC")
    (_, s), = p._deepcache_job.summaries
    assert (s.steps, s.full_steps, s.cached_steps) == (4, 2, 2)


def test_failure_falls_back_to_the_normal_forward(sd15, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("kaputt")

    _, base = E.generate(ext, sd15, None, steps=4)
    monkeypatch.setattr(E.package("core").StandIns, "cached", broken)
    p, out = E.generate(ext, sd15, E.script_args(interval=2), steps=4)
    assert torch.equal(out.images, base.images)
    (_, s), = p._deepcache_job.summaries
    assert "kaputt" in s.disabled_reason and "kaputt" in capsys.readouterr().out
    assert "(off: RuntimeError: kaputt)" in p.extra_generation_params["DeepCache"]
    assert "forward" not in vars(sd15.model.diffusion_model)


def test_extra_calls_beyond_the_cfg_batch_are_not_cached():
    core, hook, script = E.package("core"), E.package("a1111.sampler_hook"), E.package("a1111.script")
    state = core.RunState(core.DeepCacheConfig(interval=2), [3.0, 1.0, 0.0], 12, core.CacheStore().open_run())
    run = hook.SamplerRun(state, denoiser="cfg", host=E.package("a1111.a1111_host").A1111Host)
    run.begin_evaluation()
    script.ACTIVE.append(run)
    try:
        script.on_cfg_denoiser(types.SimpleNamespace(denoiser="cfg", x=torch.zeros(2, 4, 8, 8)))
    finally:
        script.ACTIVE.clear()
    assert run.keys(["row"] * 2, (4, 8, 8)) == [("row", 0, (4, 8, 8)), ("row", 1, (4, 8, 8))]
    assert run.keys(["row"], (4, 8, 8)) is None  # a third row in a two-row evaluation


def test_preview_plan_and_estimate():
    preview = E.package("a1111.tab")
    text = preview.render(10, 3, 0, "uniform", 0.0, 1.0)
    assert "`FccFccFccF`" in text and "**4 full**" in text and "**6 cached**" in text
    assert "`--FcFcFcF-`" in preview.render(10, 2, 0, "uniform", 0.2, 0.8)
    assert "Invalid settings" in preview.render(10, 0, 0, "uniform", 0.0, 1.0)
    with_model = preview.render(10, 3, 0, "uniform", 0.0, 1.0, unet=E.tiny_demo_unet("sd15"), size=64)
    assert "ideal U-Net speed-up ×" in with_model
    assert "does not exist" in preview.render(10, 3, 9, "uniform", 0.0, 1.0, unet=E.tiny_demo_unet("sdxl"))


def test_speed_test_runs_both_and_reports(sd15, monkeypatch):
    from modules import shared
    monkeypatch.setattr(shared, "sd_model", sd15)
    base, cached, report = E.package("a1111.tab").speed_test(
        ext.DeepCacheScript, "a cat", 6, 64, 7, "Euler", 3, 0, "uniform", 0.0, 1.0)
    _, plain = E.generate(ext, sd15, None, steps=6, seed=7)
    assert torch.equal(base, plain.images[0])
    assert not torch.equal(cached, base)
    assert "measured speed-up of the whole generation **×" in report


def test_install_is_quiet_and_never_installs_torch(monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("deepcache_install", E.ROOT / "install.py")
    install = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(install)
    called = []
    monkeypatch.setattr(install.subprocess, "call", lambda cmd: called.append(cmd) or 0)
    assert install.main() == 0 and called == [] and capsys.readouterr().out == ""
    monkeypatch.setattr(install, "REQUIRED", {"numpy": "numpy", "surely_absent_mod_xyz": "surely-absent"})
    assert install.main() == 0
    assert called == [[sys.executable, "-m", "pip", "install", "surely-absent"]]
    monkeypatch.setattr(install.importlib.util, "find_spec", lambda name: None)
    called.clear()
    assert install.main() == 1 and called == []  # no torch: say so, install nothing
