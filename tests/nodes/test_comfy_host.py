"""DeepCache inside a real ComfyUI (COMFYUI_PATH): the host's own samplers, wrappers,
ControlNet and patch nodes on tiny random-weight SD1.5/SDXL-style U-Nets."""
import logging

import pytest
import torch

from deepcache_plugin.core import DeepCacheConfig, StepKind, plan_run

from .comfy_host import CTX, CallLog, conds, deepcache, import_comfy, requires_comfy, sample, tiny_model

pytestmark = requires_comfy


@pytest.fixture(scope="module", autouse=True)
def comfy():
    return import_comfy()


def expected_refresh_steps(model, steps, interval, scheduler="normal", **cfg):
    import comfy.samplers
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps)
    plan = plan_run(DeepCacheConfig(interval=interval, **cfg), sigmas.tolist())
    return [i for i, k in enumerate(plan) if k is StepKind.REFRESH]


# 1. interval 1 / outside start-end: the host's exact image -------------------------------------
@pytest.mark.parametrize("kind", ["sd15", "sdxl"])
def test_interval_one_is_bit_identical(kind):
    model = tiny_model(kind)
    ref = sample(model, kind)
    assert torch.equal(sample(deepcache(model, cache_interval=1), kind), ref)
    assert torch.equal(sample(deepcache(model, cache_interval=3, start_percent=1.0), kind), ref)


@pytest.mark.parametrize("kind", ["sd15", "sdxl"])
def test_refresh_step_equals_host_forward(kind):
    """Our full forward (which stores the deep feature) gives the host's exact output."""
    model = tiny_model(kind)
    import comfy.patcher_extension as pe
    host, ours = [], []
    for m, out in ((model, host), (deepcache(model, cache_interval=100), ours)):
        m = m.clone()
        m.add_wrapper_with_key(pe.WrappersMP.APPLY_MODEL, "rec",
                               lambda ex, *a, o=out, **k: o.append(ex(*a, **k)) or o[-1])
        sample(m, kind, steps=3)
    assert torch.equal(ours[0], host[0])
    assert not torch.equal(ours[1], host[1])  # step 1 is cached


def test_interval_one_patches_nothing():
    """Interval 1 (or an empty start..end) caches nothing: the node hands the model back as it came,
    so the run is the host's own to the last instruction; after another DeepCache node it removes that one."""
    import comfy.patcher_extension as pe
    model = tiny_model()
    assert deepcache(model, cache_interval=1) is model
    assert deepcache(model, start_percent=0.5, end_percent=0.5) is model
    undone = deepcache(deepcache(model), cache_interval=1)
    assert "deepcache" not in undone.model_options["transformer_options"]
    assert not any("deepcache" in undone.wrappers.get(kind, {}) for kind in
                   (pe.WrappersMP.OUTER_SAMPLE, pe.WrappersMP.PREDICT_NOISE, pe.WrappersMP.DIFFUSION_MODEL))


# 2. stackable wrappers, only the patched clone is affected ---------------------------------------
def test_other_wrappers_keep_working_and_unpatched_model_unchanged():
    import comfy.patcher_extension as pe
    model = tiny_model()
    ref = sample(model)
    patched = deepcache(model)
    seen = []
    other = patched.clone()
    other.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, "other-node",
                               lambda ex, *a, **k: seen.append(1) or ex(*a, **k))
    other.set_model_unet_function_wrapper(lambda apply, p: seen.append(2) or apply(p["input"], p["timestep"], **p["c"]))
    sample(other, steps=6)
    assert seen.count(1) == 6 and seen.count(2) == 6
    assert torch.equal(sample(model), ref)  # the same checkpoint unpatched elsewhere in the graph


def test_second_node_on_same_model_replaces_the_first():
    model = deepcache(deepcache(tiny_model(), cache_interval=2), cache_interval=4)
    import comfy.patcher_extension as pe
    assert len(model.wrappers[pe.WrappersMP.DIFFUSION_MODEL]["deepcache"]) == 1
    log = CallLog(model)
    sample(model, steps=8, callback=log.callback)
    assert log.steps_with_full_calls() == [0, 4]


def test_torch_compile_wrapper_still_works():
    from comfy_api.torch_helpers import set_torch_compile_wrapper
    model = deepcache(tiny_model(), cache_interval=1)
    ref = sample(tiny_model(), steps=3)
    set_torch_compile_wrapper(model, backend="eager")
    assert torch.equal(sample(model, steps=3), ref)
    model = deepcache(tiny_model(), cache_interval=3)
    set_torch_compile_wrapper(model, backend="eager")
    log = CallLog(model)
    out = sample(model, steps=6, callback=log.callback)
    assert torch.isfinite(out).all() and log.steps_with_full_calls() == [0, 3]


# 3. steps are sampler steps -----------------------------------------------------------------------
TWO_STAGE = {"heun", "dpm_2", "dpmpp_sde", "dpmpp_2s_ancestral"}  # two calls per step, one in the last


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpm_2", "dpmpp_2m", "dpmpp_sde", "uni_pc", "lcm", "ddim",
                                     "dpmpp_2s_ancestral"])
def test_full_evaluations_follow_the_schedule(sampler):
    """The call sequence, full (F) or cached (C), against the schedule and each sampler's
    known number of model calls per step (cfg 7: one batched call per evaluation)."""
    steps, interval = 9, 3
    model = deepcache(tiny_model(), cache_interval=interval)
    log = CallLog(model)
    sample(model, steps=steps, sampler=sampler)
    refresh = set(expected_refresh_steps(model, steps, interval))
    calls = [2 if sampler in TWO_STAGE and s < steps - 1 else 1 for s in range(steps)]
    expected = "".join(("F" if s in refresh else "C") * n for s, n in enumerate(calls))
    assert "".join("F" if mid else "C" for _, mid, _ in log.calls) == expected


@pytest.mark.parametrize("sampler", ["dpm_adaptive", "dpm_fast", "heunpp2", "sa_solver"])
def test_samplers_with_their_own_step_counts_run(sampler):
    model = deepcache(tiny_model())
    log = CallLog(model)
    out = sample(model, steps=6, sampler=sampler)
    assert torch.isfinite(out).all() and log.calls[0][1]


# 4. a separate cache per conditioning and batch shape ---------------------------------------------
def test_split_cond_uncond_calls_match_batched_calls(monkeypatch):
    model = tiny_model()
    batched = sample(deepcache(model), steps=6)
    base = model.model
    monkeypatch.setattr(base, "memory_required", lambda *a, **k: 1e30)  # forces one call per conditioning
    log_model = deepcache(model)
    log = CallLog(log_model)
    split = sample(log_model, steps=6, callback=log.callback)
    assert all(len(u) == 1 for _, _, u in log.calls)
    assert torch.allclose(split, batched, atol=1e-4, rtol=1e-4)


def test_cfg_one_and_changing_batch_and_size():
    model = deepcache(tiny_model("sdxl"))
    for batch, size, cfg in ((1, 16, 1.0), (2, 16, 7.0), (1, 24, 7.0)):
        out = sample(model, "sdxl", batch=batch, size=size, cfg=cfg, steps=5)
        assert out.shape == (batch, 4, size, size) and torch.isfinite(out).all()


def test_pag_extra_calls_never_read_the_cache():
    from comfy_extras.nodes_pag import PerturbedAttentionGuidance
    model = PerturbedAttentionGuidance.execute(deepcache(tiny_model()), scale=3.0).result[0]
    log = CallLog(model)
    sample(model, steps=6, callback=log.callback)
    for step in (1, 2, 4, 5):  # cached steps: the batched pass is shallow, the perturbed pass is full
        mids = [mid for s, mid, _ in log.calls if s == step]
        assert mids == [False, True]


# 5. fresh state for every run ----------------------------------------------------------------------
def _assert_no_open_runs(model):
    from deepcache_plugin.core import shared_store
    store = shared_store(model.get_model_object("diffusion_model"))
    assert store.open_runs == 0 and store.nbytes == 0


def test_img2img_advanced_and_chained_runs_start_with_a_refresh_step():
    model = deepcache(tiny_model())
    first = sample(model, steps=10, last_step=5)
    _assert_no_open_runs(model)
    for kw in (dict(latent=first, start_step=5, steps=10), dict(latent=first, denoise=0.5, steps=10),
               dict(size=24, steps=4)):
        log = CallLog(model)
        sample(model, callback=log.callback, **kw)
        assert log.calls[0][1], kw  # the first call of every run is a full one
        _assert_no_open_runs(model)


def test_interrupted_run_leaves_nothing_behind():
    import comfy.model_management as mm
    model = deepcache(tiny_model())

    def interrupt(step, *rest):
        if step == 2:
            raise mm.InterruptProcessingException()

    with pytest.raises(mm.InterruptProcessingException):
        sample(model, steps=8, callback=interrupt)
    _assert_no_open_runs(model)
    ref = sample(deepcache(tiny_model()), steps=8)
    assert torch.equal(sample(model, steps=8), ref)


# 6. host hooks --------------------------------------------------------------------------------------
def _tiny_controlnet():
    import comfy.cldm.cldm
    import comfy.controlnet

    from .comfy_host import _unet_config
    cfg = {k: v for k, v in _unet_config(False).items() if k not in ("out_channels", "transformer_depth_output")}
    cfg["num_head_channels"], cfg["num_heads"] = 16, -1
    net = comfy.cldm.cldm.ControlNet(hint_channels=3, operations=comfy.ops.disable_weight_init, device="cpu", **cfg)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return comfy.controlnet.ControlNet(net, load_device=torch.device("cpu"), manual_cast_dtype=None)


def _with_control(cnet, kind="sd15"):
    hint = torch.rand(1, 3, 128, 128)
    c = cnet.copy().set_cond_hint(hint.movedim(1, 1), 1.0, (0.0, 1.0))
    pos, neg = conds(kind)
    return [[t, dict(d, control=c, control_apply_to_uncond=True)] for t, d in pos + neg][:1], \
        [[t, dict(d, control=c, control_apply_to_uncond=True)] for t, d in neg]


def test_controlnet_residuals_land_on_their_blocks(caplog):
    cnet = _tiny_controlnet()
    model = tiny_model()
    pos, neg = _with_control(cnet)
    ref = sample(model, steps=4, positive=pos, negative=neg)
    pos, neg = _with_control(cnet)
    assert torch.equal(sample(deepcache(model, cache_interval=1), steps=4, positive=pos, negative=neg), ref)
    with caplog.at_level(logging.WARNING):
        for branch in (0, 2, 5):
            pos, neg = _with_control(cnet)
            out = sample(deepcache(model, cache_branch=branch), steps=6, positive=pos, negative=neg)
            assert torch.isfinite(out).all()
    assert "control could not be applied" not in caplog.text and "DeepCache" not in caplog.text


def test_controlnet_output_residual_order_on_cached_step():
    """Residual k (for skip k) must reach output block L-1-k, also when blocks are skipped."""
    from deepcache_plugin.core import unet_forward
    from deepcache_plugin.nodes.comfy_ops import ComfyUNetOps
    unet = tiny_model().get_model_object("diffusion_model")
    x, t, ctx = torch.randn(2, 4, 16, 16), torch.full((2,), 400.0), torch.randn(2, 77, 32)
    seen = {}

    def record(h, hsp, to):
        seen[to["block"][1]] = hsp.clone()
        return h, hsp

    def run(control, deep=None, branch=3):
        """(output, deep feature) of the core forward through the ComfyUI ops."""
        to = {"patches": {"output_block_patch": [record]}}
        return unet_forward(ComfyUNetOps(unet, t, ctx, None, control, to, {}), x, 12, branch, deep=deep)

    _, deep = run(None)
    plain = dict(seen)
    # entry k is for skip k (input-block order), the host pops from the end
    markers = {"output": [torch.full((1, plain[11 - k].shape[1], 1, 1), float(k + 1)) for k in range(12)]}
    seen.clear()
    run(markers, deep=deep.clone())
    for j in (8, 9, 10, 11):
        assert torch.allclose(seen[j] - plain[j], torch.full_like(plain[j], float(11 - j + 1))), j


def test_input_residuals_and_emb_patch_on_cached_step():
    """T2I-Adapter style input residuals (popped from the end by input blocks 0..b) and
    emb patches reach the blocks that run on a cached step."""
    from deepcache_plugin.core import unet_forward
    from deepcache_plugin.nodes.comfy_ops import ComfyUNetOps
    unet = tiny_model().get_model_object("diffusion_model")
    x, t, ctx = torch.randn(2, 4, 16, 16), torch.full((2,), 400.0), torch.randn(2, 77, 32)
    seen, emb_calls = {}, []

    def record(h, to):
        seen[to["block"][1]] = h.clone()
        return h

    def emb_patch(emb, channels, to):
        emb_calls.append(to["original_shape"])
        return emb

    def run(control, deep=None, branch=2):
        """(output, deep feature) of the core forward through the ComfyUI ops."""
        to = {"patches": {"input_block_patch": [record], "emb_patch": [emb_patch]}}
        return unet_forward(ComfyUNetOps(unet, t, ctx, None, control, to, {}), x, 12, branch, deep=deep)

    run(None)
    plain = dict(seen)

    def markers():
        return {"input": [torch.full((1, plain[11 - k].shape[1], 1, 1), float(k + 1)) for k in range(12)]}

    seen.clear()
    _, deep = run(markers())  # the full forward is the host's own (tested above)
    full = dict(seen)
    seen.clear()
    run(markers(), deep=deep.clone())
    assert sorted(seen) == [0, 1, 2]
    assert torch.allclose(full[0] - plain[0], torch.full_like(plain[0], 12.0))  # block 0 pops the last entry
    for i in (0, 1, 2):
        assert torch.equal(seen[i], full[i]), i
    assert emb_calls == [[2, 4, 16, 16]] * 3  # every forward, the cached one too


def test_kohya_deep_shrink_with_deepcache():
    from comfy_extras.nodes_model_downscale import PatchModelAddDownscale
    model = PatchModelAddDownscale.execute(tiny_model(), 3, 2.0, 0.0, 0.5, True, "bicubic", "bicubic").result[0]
    ref = sample(model, steps=6, size=24)
    assert torch.equal(sample(deepcache(model, cache_interval=1), steps=6, size=24), ref)
    for branch in (0, 4):
        out = sample(deepcache(model, cache_branch=branch), steps=6, size=24)
        assert torch.isfinite(out).all()


def test_freeu_and_block_patches_run_on_cached_steps():
    from comfy_extras.nodes_freelunch import FreeU_V2
    model = tiny_model()
    free = FreeU_V2().patch(model, 1.3, 1.4, 0.9, 0.2)[0] if hasattr(FreeU_V2, "patch") else \
        FreeU_V2.execute(model, 1.3, 1.4, 0.9, 0.2).result[0]
    ref = sample(free, steps=5)
    assert torch.equal(sample(deepcache(free, cache_interval=1), steps=5), ref)
    a = sample(deepcache(free, cache_branch=3), steps=6)
    b = sample(deepcache(free, cache_branch=3), steps=6)
    assert torch.equal(a, b)  # in-place FreeU scaling never reaches the cache


def test_transformer_index_matches_full_forward_on_cached_steps():
    model = deepcache(tiny_model(), cache_branch=2)
    seen = []

    def attn1_patch(q, k, v, extra_options):
        seen.append((extra_options["block"], extra_options["transformer_index"], extra_options["block_index"]))
        return q, k, v

    model.set_model_attn1_patch(attn1_patch)
    log = CallLog(model)
    sample(model, steps=3, callback=log.callback, cfg=1.0)
    assert [mid for _, mid, _ in log.calls] == [True, False, False]
    per_block = {}
    for block, index, _ in seen:
        per_block.setdefault(block, set()).add(index)
    # skipped blocks advance the index: a recomputed block keys on the same index as in a full step
    assert all(len(v) == 1 for v in per_block.values()), per_block
    assert len(seen) > len(per_block)  # cached steps did run attention in recomputed blocks


def test_sdxl_label_embedding_and_lower_precision():
    model = tiny_model("sdxl", dtype=torch.bfloat16)
    out = sample(deepcache(model), "sdxl", steps=5)
    assert torch.isfinite(out).all()


def test_svd_video_unet():
    from .comfy_host import tiny_svd
    model = tiny_svd()
    frames = 4
    latent = torch.zeros(frames, 4, 16, 16)
    g = torch.Generator().manual_seed(5)
    pos, neg = ([[torch.randn(1, 1, CTX, generator=g), {"concat_latent_image": torch.zeros(1, 4, 16, 16), "fps": 6,
                 "motion_bucket_id": 127, "augmentation_level": 0.0}]] for _ in range(2))
    kw = dict(steps=6, cfg=2.5, scheduler="karras", latent=latent, positive=pos, negative=neg)
    ref = sample(model, **kw)
    assert torch.equal(sample(deepcache(model, cache_interval=1), **kw), ref)
    cached = deepcache(model)
    log = CallLog(cached)
    out = sample(cached, **kw)
    assert torch.isfinite(out).all() and "".join("F" if m else "C" for _, m, _ in log.calls) == "FCCFCC"


# 8. not a U-Net / bad input --------------------------------------------------------------------------
def test_non_unet_model_passes_through_with_one_warning(caplog):
    import comfy.model_patcher

    class DiT(torch.nn.Module):
        pass

    class Base(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.diffusion_model = DiT()

    model = comfy.model_patcher.ModelPatcher(Base(), torch.device("cpu"), torch.device("cpu"))
    with caplog.at_level(logging.WARNING):
        assert deepcache(model) is model
        assert deepcache(model) is model
    assert caplog.text.count("not an openaimodel U-Net") == 1


def test_bad_branch_for_sdxl_is_rejected():
    with pytest.raises(ValueError, match=r"0\.\.8"):
        deepcache(tiny_model("sdxl"), cache_branch=9)


# 9/10. store and report ---------------------------------------------------------------------------------
def test_buffers_allocated_once_per_key_and_report_logged(caplog, monkeypatch):
    from deepcache_plugin.core import store as store_mod
    allocations = []
    orig_close = store_mod.RunCache.close

    def spy_close(self):
        allocations.append(self.allocations)
        orig_close(self)

    monkeypatch.setattr(store_mod.RunCache, "close", spy_close)
    model = deepcache(tiny_model(), cache_interval=2)
    with caplog.at_level(logging.INFO, logger="DeepCache"):
        sample(model, steps=10)
    assert allocations == [2]  # cond and uncond, written in place on every later refresh step
    assert "DeepCache: 5 full / 5 cached steps, U-Net x" in caplog.text and "measured" in caplog.text
    _assert_no_open_runs(model)


def test_two_nodes_share_one_store_per_model():
    from deepcache_plugin.core import shared_store
    base = tiny_model()
    a, b = deepcache(base, cache_interval=2), deepcache(base, cache_interval=3)
    unet = base.get_model_object("diffusion_model")
    assert a.get_model_object("diffusion_model") is unet is b.get_model_object("diffusion_model")
    ref_a, ref_b = sample(a, steps=6), sample(b, steps=6)
    assert torch.equal(sample(a, steps=6), ref_a) and torch.equal(sample(b, steps=6), ref_b)
    assert shared_store(unet).open_runs == 0


# 11. what a run reports and reuses --------------------------------------------------------------------
def _summary_line(caplog):
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("DeepCache: ")][-1]


def test_pag_and_sag_runs_report_the_steps_they_cached(caplog):
    """The perturbed pass of PAG/SAG runs the host forward; the conditioning calls of a cached
    step were cached, so the step counts as cached (and the extra passes apart)."""
    from comfy_extras.nodes_pag import PerturbedAttentionGuidance
    from comfy_extras.nodes_sag import SelfAttentionGuidance
    for patched in (PerturbedAttentionGuidance.execute(deepcache(tiny_model()), scale=3.0).result[0],
                    SelfAttentionGuidance.execute(deepcache(tiny_model()), scale=0.5, blur_sigma=2.0).result[0]):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="DeepCache"):
            out = sample(patched, steps=6)
        assert torch.isfinite(out).all()
        line = _summary_line(caplog)
        assert line.startswith("DeepCache: 2 full / 4 cached steps + 6 extra passes in full, U-Net x"), line


def test_a_refresh_step_skipped_by_another_cache_node_is_made_up_never_read_stale():
    """Another cache node on top (EasyCache) may skip the U-Net on a planned refresh step: the
    next call refreshes instead of reusing the feature of the refresh before it."""
    import comfy.patcher_extension as pe
    model = deepcache(tiny_model(), cache_interval=3)
    log = CallLog(model)

    def skip_step_3(executor, *args, **kwargs):
        if log.step == 3:
            return torch.zeros_like(args[0])
        return executor(*args, **kwargs)

    model.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, "other-cache", skip_step_3)
    sample(model, steps=9, callback=log.callback)
    pattern = "".join("-" if not ran else "F" if mid else "C" for (_, mid, _), ran in zip(log.calls, log.ran))
    assert pattern == "FCC" + "-" + "FC" + "FCC"  # step 4 refreshes; plan: refresh at 0, 3, 6


def test_easycache_on_top_never_reads_a_feature_older_than_the_plan():
    from comfy_extras.nodes_easycache import EasyCacheNode
    model = EasyCacheNode.execute(deepcache(tiny_model(), cache_interval=3), reuse_threshold=0.2,
                                  start_percent=0.0, end_percent=1.0, verbose=False).result[0]
    log = CallLog(model)
    out = sample(model, steps=12, callback=log.callback)
    assert torch.isfinite(out).all()
    refresh = expected_refresh_steps(model, 12, 3)
    last_full = -1
    for (step, mid, _), ran in zip(log.calls, log.ran):
        if ran and mid:
            last_full = step
        elif ran:  # a cached call: its feature comes from the latest planned refresh or later
            assert last_full >= max(r for r in refresh if r <= step), (step, last_full)


def test_nothing_but_sampling_on_the_sampling_path():
    """No value of a device tensor is read into Python by the plugin during sampling (each would
    be a synchronisation on CUDA) and no fake or meta tensor reaches a U-Net module."""
    from ..guards import HostReads, no_fake_or_meta_inputs
    model = deepcache(tiny_model("sdxl"), cache_interval=3)
    unet = model.get_model_object("diffusion_model")
    fakes = []
    log = CallLog(model)
    with no_fake_or_meta_inputs(unet, fakes), HostReads(allowed=("_start_run",)) as reads:
        sample(model, "sdxl", steps=6, callback=log.callback)
        sample(model, "sdxl", steps=4, size=24, sampler="heun")
    assert reads.found == [] and fakes == []
    assert [mid for _, mid, _ in log.calls[:6]] == [True, False, False, True, False, False]


@pytest.mark.parametrize("node_first", [False, True])
def test_torch_compile_adds_no_graphs_after_the_first_run(node_first):
    """With the host's TorchCompileModel wrapper (before or after the node), DeepCache compiles
    each mode once: later runs, also at a second size, add no graphs and recompile nothing."""
    import torch._dynamo
    from comfy_api.torch_helpers import set_torch_compile_wrapper
    from torch._dynamo.utils import counters

    base = tiny_model()
    if node_first:
        model = deepcache(base, cache_interval=3)
        set_torch_compile_wrapper(model, backend="eager")
    else:
        model = base.clone()
        set_torch_compile_wrapper(model, backend="eager")
        model = deepcache(model, cache_interval=3)
    torch._dynamo.reset()
    counters.clear()
    graphs = []
    try:
        for size in (16, 24, 16, 24, 16):
            log = CallLog(model)
            sample(model, steps=6, size=size, callback=log.callback)
            assert [mid for _, mid, _ in log.calls] == [True, False, False, True, False, False]
            graphs.append(counters["stats"]["unique_graphs"])
    finally:
        torch._dynamo.reset()
    assert graphs[0] > 0 and graphs[1] >= graphs[0]
    assert graphs[2:] == [graphs[1]] * 3, graphs  # nothing new once both sizes have run
