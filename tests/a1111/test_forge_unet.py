"""The Forge adapter on a real Forge checkout (FORGE_PATH): its U-Net class, KModel,
eps predictor and UnetPatcher, on a shrunk random-weight SD1.5 layout. Skips
without FORGE_PATH. Forge's backend imports psutil, gguf, diffusers and
transformers; `--always-cpu` keeps it off CUDA."""
import os
import sys
import types

import a1111_harness as E  # stubs/ (on sys.path from conftest.py)
import pytest
import torch

FORGE = os.environ.get("FORGE_PATH")
pytestmark = pytest.mark.skipif(not FORGE, reason="set FORGE_PATH to a stable-diffusion-webui-forge checkout")

E.load_extension()


@pytest.fixture(scope="module")
def forge():
    sys.path.insert(0, FORGE)
    argv, sys.argv = sys.argv, [sys.argv[0], "--always-cpu"]  # backend.args parses argv on import
    try:
        from backend.modules.k_model import KModel
        from backend.modules.k_prediction import Prediction
        from backend.nn.unet import IntegratedUNet2DConditionModel
        from backend.patcher.unet import UnetPatcher
    finally:
        sys.argv = argv
    torch.manual_seed(0)
    unet = IntegratedUNet2DConditionModel(
        in_channels=4, model_channels=32, out_channels=4, num_res_blocks=2, channel_mult=(1, 2, 4, 4),
        num_head_channels=8, use_spatial_transformer=True, transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0],
        transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], transformer_depth_middle=1,
        context_dim=24).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in unet.parameters():
            param.copy_(torch.randn(param.shape, generator=g) * (0.5 / max(1, param[0].numel()) ** 0.5))
    unet.storage_dtype = unet.computation_dtype = torch.float32
    kmodel = KModel(unet, None, k_predictor=Prediction(prediction_type="epsilon"))
    patcher = UnetPatcher(kmodel, torch.device("cpu"), torch.device("cpu"))
    return types.SimpleNamespace(unet=unet, kmodel=kmodel, patcher=patcher)


@pytest.fixture(autouse=True)
def one_thread():
    # tiny U-Nets: one thread avoids OpenMP spin-waits when the machine is busy
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def inputs(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 4, 8, 8, generator=g), torch.full((2,), 4.0), torch.randn(2, 7, 24, generator=g)


def control(seed):
    """ControlNet residuals as Forge's sampling function passes them (lists popped per block)."""
    g = torch.Generator().manual_seed(seed)
    chans = [32, 32, 32, 32, 64, 64, 64, 128, 128, 128, 128, 128]
    sizes = [8, 8, 8, 4, 4, 4, 2, 2, 2, 1, 1, 1]
    out = [torch.randn(2, c, s, s, generator=g) * 0.1 for c, s in zip(chans, sizes)]
    return {"output": out, "middle": [torch.randn(2, 128, 1, 1, generator=g) * 0.1]}


def fake_p(forge):
    model = types.SimpleNamespace(forge_objects=types.SimpleNamespace(unet=forge.patcher))
    return types.SimpleNamespace(sd_model=model, is_hr_pass=False, sampler=types.SimpleNamespace(func=lambda: None),
                                 extra_generation_params={}, comments={})


def test_patches_a_clone_idempotently(forge):
    params, script = E.package("a1111.params"), E.package("a1111.script")
    p = fake_p(forge)
    j = script.Job(p, params.choices_from_values(params.values_from_args(E.script_args(interval=3))))
    j.before_sampling()
    first = p.sd_model.forge_objects.unet
    j.before_sampling()  # Forge calls the hook twice in the hires pass
    assert p.sd_model.forge_objects.unet is first is not forge.patcher
    assert "model_function_wrapper" not in forge.patcher.model_options  # the user's patcher is untouched
    wrapper = first.model_options["model_function_wrapper"]
    assert isinstance(wrapper, E.package("a1111.forge_host").ForgeWrapper)
    assert first.clone().model_options["model_function_wrapper"] is wrapper
    p.sd_model.forge_objects.unet = forge.patcher  # Forge resets forge_objects between the two calls
    j.before_sampling()
    assert p.sd_model.forge_objects.unet.model_options["model_function_wrapper"] is not None
    j.finish()


def test_wrapper_full_step_equals_kmodel_and_cached_step_skips(forge):
    core, hook, fp = E.package("core"), E.package("a1111.sampler_hook"), E.package("a1111.forge_host")
    state = core.RunState(core.DeepCacheConfig(interval=3), [4.0, 2.0, 1.0, 0.0], 12,
                          core.shared_store(forge.unet).open_run())
    run = hook.SamplerRun(state)
    wrapper = fp.ForgeWrapper(12, 0)
    wrapper.run = run
    seen = {"ours": [], "forge": []}

    def modifier(log):
        def mod(h, when, to):
            log.append((to["block"], when, to["transformer_index"]))
            return h
        return mod

    def c_for(seed, log):
        return {"c_crossattn": inputs(seed)[2], "control": control(seed),
                "transformer_options": {"block_modifiers": [modifier(log)]}}

    x, t, _ = inputs(1)
    with torch.no_grad():
        expected = forge.kmodel.apply_model(x, t, **c_for(1, seen["forge"]))
        run.begin_evaluation()
        full = wrapper(forge.kmodel.apply_model, {"input": x, "timestep": t, "c": c_for(1, seen["ours"]),
                                                   "cond_or_uncond": [0, 1]})
        assert torch.equal(full, expected)
        assert seen["ours"] == seen["forge"]  # same blocks, order and transformer indices
        state.on_callback(0)
        x2 = x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(9))
        run.begin_evaluation()
        ctrl_log = []
        c2 = c_for(2, ctrl_log)
        cached = wrapper(forge.kmodel.apply_model, {"input": x2, "timestep": torch.full((2,), 2.0), "c": c2,
                                                     "cond_or_uncond": [0, 1]})
        reference = forge.kmodel.apply_model(x2, torch.full((2,), 2.0), **c_for(2, []))
        c3 = c_for(2, [])
        c3["control"]["output"][0] = c3["control"]["output"][0] + 1.0  # the last output block's residual
        state.on_callback(1)
        run.begin_evaluation()
        cached3 = wrapper(forge.kmodel.apply_model, {"input": x2, "timestep": torch.full((2,), 2.0), "c": c3,
                                                     "cond_or_uncond": [0, 1]})
    state.close()
    assert state.full_calls == 1 and state.cached_calls == 2
    assert not torch.allclose(cached, reference, atol=1e-4) and torch.isfinite(cached).all()
    assert len(c2["control"]["output"]) == 12  # the host's lists stay whole (for a fallback to its forward)
    assert not torch.allclose(cached3, cached)  # the residual of a block that runs reached it
    # the shallow output block sees the transformer index it has in a full forward
    full_last = [e for e in seen["forge"] if e[0] == ("output", 11)]
    assert [e for e in ctrl_log if e[0] == ("output", 11)] == full_last
