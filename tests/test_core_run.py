import math

import torch

from deepcache_plugin.core import DeepCacheConfig, Mode, RunState, StepKind, shared_store
from deepcache_plugin.core.store import CacheStore

from .unets import CoreSampler, tiny_unet

SIGMAS = [14.6, 9.0, 6.0, 4.0, 2.5, 1.5, 0.9, 0.5, 0.2, 0.0]


def new_run(interval=3, sigmas=SIGMAS, **kw):
    return RunState(DeepCacheConfig(interval=interval), sigmas, 12, CacheStore().open_run(), **kw)


def heun_like_run(run, callback_after_first=True):
    """k-diffusion's Heun: evaluate at s_i, call back (i), evaluate at s_{i+1}."""
    modes = []
    for i in range(len(SIGMAS) - 1):
        sigmas = (SIGMAS[i], SIGMAS[i + 1]) if SIGMAS[i + 1] > 0 else (SIGMAS[i],)
        for n, sigma in enumerate(sigmas):
            run.begin_evaluation()
            m = run.decide(sigma, ["c"])
            if m is Mode.FULL:
                run.cache.write(["c"], torch.zeros(1, 3))
            modes.append(m)
            if n == 0 and callback_after_first:
                run.on_callback(i)
        if not callback_after_first:
            run.on_step_end(i)
    return "".join("F" if m is Mode.FULL else "C" for m in modes)


def test_heun_second_call_stays_in_its_step():
    # 9 steps, interval 3: refresh steps 0, 3, 6; two calls per step but the last
    expected = "FF" + "CC" * 2 + "FF" + "CC" * 2 + "FF" + "CC" + "C"
    assert heun_like_run(new_run(mid_step_callback=True)) == expected
    assert heun_like_run(new_run(mid_step_callback=True), callback_after_first=False) == expected
    run = new_run(mid_step_callback=True)
    heun_like_run(run)
    assert run.summary().full_evals == 6 and run.summary().cached_evals == 11


def test_step_from_sigma_without_callbacks():
    run = new_run()
    assert run.step_for(SIGMAS[0]) == 0
    assert run.step_for(SIGMAS[4]) == 4  # single-stage samplers evaluate step k at s_k
    assert run.step_for(0.7) == 6        # between sigma[6] and sigma[7]: step 6
    run.on_step_end(4)
    assert run.step_for(SIGMAS[4]) == 5
    multi = new_run(mid_step_callback=True)
    assert multi.step_for(SIGMAS[4]) == 3  # may be Heun's last stage of step 3: never run ahead


def test_conditionings_never_share_features():
    run = new_run()
    run.begin_evaluation()
    assert run.decide(SIGMAS[0], ["cond", "uncond"]) is Mode.FULL
    run.cache.write(["cond", "uncond"], torch.stack([torch.zeros(2), torch.ones(2)]))
    run.on_step_end(0)
    run.begin_evaluation()
    # cfg 1 on this step: only cond, read from its own buffer
    assert run.decide(SIGMAS[1], ["cond"]) is Mode.CACHED
    assert torch.equal(run.cache.read(["cond"]), torch.zeros(1, 2))
    # a conditioning never stored (a new area or timestep-range cond) gets a full call
    assert run.decide(SIGMAS[1], ["other"]) is Mode.FULL


def test_second_call_of_same_conditioning_in_one_evaluation_passes_through():
    run = new_run()
    run.begin_evaluation()
    assert run.decide(SIGMAS[0], ["cond", "uncond"]) is Mode.FULL
    run.cache.write(["cond", "uncond"], torch.zeros(2, 2))
    assert run.decide(SIGMAS[0], ["cond"]) is Mode.PASSTHROUGH  # PAG/SAG perturbed pass
    run.on_step_end(0)
    run.begin_evaluation()
    assert run.decide(SIGMAS[1], ["cond", "uncond"]) is Mode.CACHED
    assert run.decide(SIGMAS[1], ["cond"]) is Mode.PASSTHROUGH


def test_steps_past_the_plan_pass_through():
    run = new_run()
    for i in range(12):  # an adaptive sampler reporting more steps than the schedule has
        run.begin_evaluation()
        mode = run.decide(SIGMAS[-2], ["c"])
        if mode is Mode.FULL:
            run.cache.write(["c"], torch.zeros(1))
        run.on_callback(i)
    assert mode is Mode.PASSTHROUGH and run.step_for(SIGMAS[-2]) == 11


def test_disabled_run_passes_everything_through():
    run = new_run()
    run.disable("boom")
    run.begin_evaluation()
    assert run.decide(SIGMAS[0], ["c"]) is Mode.PASSTHROUGH
    assert "off: boom" in run.summary().text()


def test_store_allocates_once_and_writes_in_place():
    store = CacheStore()
    cache = store.open_run()
    cache.write(["a", "b"], torch.randn(4, 3))
    ptr = cache._buffers["a"].data_ptr()
    for _ in range(3):
        cache.write(["a", "b"], torch.randn(4, 3))
    assert cache.allocations == 2 and cache._buffers["a"].data_ptr() == ptr
    out = cache.read(["a"])
    out += 1  # a patch changing h in place must not reach the cache
    assert not torch.equal(out, cache.read(["a"]))
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
    assert torch.allclose(out[:, :, :1], out[:, :, :1]) and not torch.equal(out, ref)
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


def test_summary_speedup_uses_cost_fraction():
    run = new_run(interval=3, cost_fraction=0.1)
    for i in range(9):
        run.begin_evaluation()
        if run.decide(SIGMAS[i], ["c"]) is Mode.FULL:
            run.cache.write(["c"], torch.zeros(1))
        run.on_step_end(i)
    s = run.summary()
    assert (s.full_evals, s.cached_evals) == (3, 6)
    assert math.isclose(s.estimated_speedup, 9 / (3 + 6 * 0.1))
    assert run.plan.count(StepKind.REFRESH) == 3
