import torch

from deepcache_plugin.core import DeepCacheConfig, Mode, RunState, StepKind, shared_store
from deepcache_plugin.core.store import CacheStore

from ..unets import CoreSampler, tiny_unet

SIGMAS = [14.6, 9.0, 6.0, 4.0, 2.5, 1.5, 0.9, 0.5, 0.2, 0.0]


def new_run(interval=3, sigmas=SIGMAS, **kw):
    return RunState(DeepCacheConfig(interval=interval), sigmas, 12, CacheStore().open_run(), **kw)


def call(run, keys=("c",)):
    """One U-Net call the way core.call_unet makes it: decide, and store on a full call."""
    mode = run.decide(list(keys))
    if mode is Mode.FULL:
        run.cache.write(list(keys), torch.zeros(len(keys), 3), run.step)
    return mode


def letters(modes):
    return "".join({Mode.FULL: "F", Mode.CACHED: "C", Mode.PASSTHROUGH: "P"}[m] for m in modes)


def heun_like_run(run, callback_after_first=True):
    """k-diffusion's Heun: evaluate at s_i, call back (i), evaluate at s_{i+1}; the last step is Euler."""
    modes = []
    for i in range(len(SIGMAS) - 1):
        for n in range(2 if SIGMAS[i + 1] > 0 else 1):
            run.begin_evaluation()
            modes.append(call(run))
            if n == 0 and callback_after_first:
                run.on_callback(i)
        if not callback_after_first:
            run.on_step_end(i)
    return letters(modes)


def test_heun_second_call_stays_in_its_step():
    # 9 steps, interval 3: refresh steps 0, 3, 6; two calls per step but the last
    expected = "FF" + "CC" * 2 + "FF" + "CC" * 2 + "FF" + "CC" + "C"
    assert heun_like_run(new_run(mid_step_callback=True)) == expected
    assert heun_like_run(new_run(mid_step_callback=True), callback_after_first=False) == expected
    run = new_run(mid_step_callback=True)
    heun_like_run(run)
    s = run.summary()
    assert (s.full_calls, s.cached_calls, s.full_steps, s.cached_steps) == (6, 11, 3, 6)


def test_steps_come_from_callbacks_not_from_call_counts():
    # a sampler that evaluates twice before its callback (PLMS's first step) keeps both in step 0
    run = new_run()
    modes = []
    for i, evals in enumerate([2, 1, 1, 1]):
        for _ in range(evals):
            run.begin_evaluation()
            modes.append(call(run))
        run.on_callback(i)
    assert letters(modes) == "FFCCF"


def test_conditionings_never_share_features():
    run = new_run()
    run.begin_evaluation()
    assert call(run, ["cond", "uncond"]) is Mode.FULL
    run.on_step_end(0)
    run.begin_evaluation()
    assert run.decide(["cond"]) is Mode.CACHED  # cfg 1 on this step: only cond, from its own buffer
    # a conditioning never stored (a new area or timestep-range cond) gets a full call
    assert run.decide(["other"]) is Mode.FULL


def test_second_call_of_same_conditioning_in_one_evaluation_passes_through():
    run = new_run()
    for step in range(3):
        run.begin_evaluation()
        call(run, ["cond", "uncond"])
        assert run.decide(["cond"]) is Mode.PASSTHROUGH  # PAG/SAG perturbed pass
        run.on_step_end(step)
    s = run.summary()
    # the perturbed passes are counted apart: they do not make a cached step a full one
    assert (s.full_steps, s.cached_steps, s.extra_calls) == (1, 2, 3)
    assert "1 full / 2 cached steps + 3 extra passes in full" in s.text()


def test_a_cached_step_never_reads_a_feature_older_than_its_refresh():
    # another cache node skips the refresh step 3 entirely (no U-Net call): steps 4 and 5
    # must not reuse step 0's feature, the first of them refreshes instead
    run = new_run(interval=3)
    modes = []
    for step in range(9):
        run.begin_evaluation()
        if step != 3:
            modes.append(call(run))
        run.on_step_end(step)
    assert letters(modes) == "FCC" + "FC" + "FCC"
    assert run.cache.has(["c"], since=6)


def test_steps_past_the_plan_pass_through():
    run = new_run()
    modes = []
    for i in range(12):  # an adaptive sampler reporting more steps than the schedule has
        run.begin_evaluation()
        modes.append(call(run))
        run.on_callback(i)
    assert letters(modes[9:]) == "PPP"


def test_disabled_run_passes_everything_through():
    run = new_run()
    run.disable("boom")
    run.disable("later")  # the first reason stays
    run.begin_evaluation()
    assert run.decide(["c"]) is Mode.PASSTHROUGH
    assert "off: boom" in run.summary().text()


def test_store_allocates_once_and_writes_in_place():
    store = CacheStore()
    cache = store.open_run()
    cache.write(["a", "b"], torch.randn(4, 3))
    ptr = cache._buffers["a"].data_ptr()
    for step in range(3):
        cache.write(["a", "b"], torch.randn(4, 3), step)
    assert cache.allocations == 2 and cache._buffers["a"].data_ptr() == ptr
    assert cache.has(["a", "b"], since=2) and not cache.has(["a"], since=3)
    assert cache.read(["a"]).data_ptr() == ptr  # one key: the buffer itself, no copy
    assert torch.equal(cache.read(["a", "b"])[:2], cache.read(["a"]))
    assert store.open_runs == 1 and store.nbytes > 0
    cache.close()
    assert store.open_runs == 0 and store.nbytes == 0


def test_store_is_shared_per_unet_and_runs_are_separate():
    a, b = tiny_unet(), tiny_unet()
    assert shared_store(a) is shared_store(a) and shared_store(a) is not shared_store(b)
    r1, r2 = shared_store(a).open_run(), shared_store(a).open_run()
    r1.write(["k"], torch.zeros(1, 2))
    assert r1.has(["k"]) and not r2.has(["k"])


@torch.no_grad()
def test_sampling_interval_one_equals_plain_sampling():
    unet = tiny_unet()
    x = torch.randn(1, 4, 8, 8).repeat(2, 1, 1, 1)
    ctx = torch.randn(2, 7, 24)
    plain = CoreSampler(unet, DeepCacheConfig(interval=1), 12)
    ref = plain.sample(x, SIGMAS[:6], ctx)
    assert {m for _, m in plain.calls} == {Mode.PASSTHROUGH}
    sampler = CoreSampler(unet, DeepCacheConfig(interval=3, branch=1), 12)
    out = sampler.sample(x, SIGMAS[:6], ctx)
    assert [m for _, m in sampler.calls] == [Mode.FULL, Mode.CACHED, Mode.CACHED, Mode.FULL, Mode.CACHED]
    assert not torch.equal(out, ref)
    s = sampler.summary
    assert (s.full_steps, s.cached_steps) == (2, 3)


@torch.no_grad()
def test_heun_sampling_counts_steps_not_calls():
    unet = tiny_unet()
    sampler = CoreSampler(unet, DeepCacheConfig(interval=2), 12)
    sigmas = SIGMAS[:6] + [0.0]
    sampler.sample(torch.randn(2, 4, 8, 8), sigmas, torch.randn(2, 7, 24), heun=True)
    full_calls = [step for step, m in sampler.calls if m is Mode.FULL]
    # 6 steps, refresh at 0, 2, 4; two calls each (the last step is Euler)
    assert full_calls == [0, 0, 2, 2, 4, 4]
    assert sampler.summary.cached_steps == 3


@torch.no_grad()
def test_summary_reports_measured_unet_time():
    unet = tiny_unet()
    sampler = CoreSampler(unet, DeepCacheConfig(interval=3), 12)
    sampler.sample(torch.randn(2, 4, 16, 16), SIGMAS, torch.randn(2, 7, 24))
    s = sampler.summary
    m = s.measured
    assert m.full_seconds > 0 and m.cached_seconds > 0 and m.speedup is not None
    assert m.speedup > 1.0 and m.saved_seconds > 0  # the shallow branch of SD1.5's layout costs far less
    assert f"U-Net x{m.speedup:.2f} measured" in s.text()
    assert s.full_calls + s.cached_calls == 9 and [k for k in sampler.plan] == [
        StepKind.REFRESH, StepKind.CACHED, StepKind.CACHED] * 3


def test_timings_that_cannot_be_read_leave_the_summary_without_a_speedup():
    run = new_run()
    run.begin_evaluation()
    run.decide(["c"])

    def unreadable():
        raise RuntimeError("events of another device")

    run.times.measure = unreadable
    s = run.close()
    assert s.measured is None and s.full_steps == 1 and "measured" not in s.text()
    assert run.cache.closed  # the features are freed all the same
