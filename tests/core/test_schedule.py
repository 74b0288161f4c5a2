import pytest

from deepcache_plugin.core import ConfigError, DeepCacheConfig, StepKind, plan_run
from deepcache_plugin.core.schedule import nonuniform_steps, plan_steps, uniform_steps


def test_uniform_refreshes_every_nth_step():
    assert uniform_steps(10, 3) == [0, 3, 6, 9]
    assert uniform_steps(5, 1) == [0, 1, 2, 3, 4]


def test_nonuniform_matches_paper_eq7_signed():
    # T=50, c=15 (0.3*T), p=1.4: the sign-preserving form of Eq. 7
    assert nonuniform_steps(50, 5, 0.3, 1.4) == [0, 5, 10, 13, 15, 19, 24, 29, 35, 42]
    assert nonuniform_steps(50, 10, 0.3, 1.4) == [0, 10, 15, 24, 35]


def test_nonuniform_scales_center_with_steps():
    steps = nonuniform_steps(20, 3, 0.3, 1.4)
    assert steps[0] == 0 and all(0 <= s < 20 for s in steps)
    gaps = [b - a for a, b in zip(steps, steps[1:])]
    dense = [s for s in steps if 3 <= s <= 9]
    assert min(gaps) == 1 and len(dense) >= 3  # densest around 0.3 * 20 = 6


def test_plan_respects_start_end_sigma():
    sigmas = [10.0, 8.0, 6.0, 4.0, 2.0, 1.0, 0.5, 0.0]
    plan = plan_run(DeepCacheConfig(interval=2), sigmas, start_sigma=8.0, end_sigma=1.0)
    assert [k.value for k in plan] == ["off", "refresh", "cached", "refresh", "cached", "refresh", "off"]


def test_plan_interval_one_or_empty_range_is_all_off():
    sigmas = [3.0, 2.0, 1.0, 0.0]
    assert set(plan_run(DeepCacheConfig(interval=1), sigmas)) == {StepKind.OFF}
    assert set(plan_run(DeepCacheConfig(interval=3, start_percent=0.5, end_percent=0.5), sigmas)) == {StepKind.OFF}


def test_plan_starts_with_refresh_in_partial_runs():
    plan = plan_steps(DeepCacheConfig(interval=3), 10, range(4, 10))
    assert plan[4] is StepKind.REFRESH and plan[5] is StepKind.CACHED and plan[7] is StepKind.REFRESH


@pytest.mark.parametrize("kwargs, words", [
    (dict(interval=0), "cache_interval"),
    (dict(interval=2.5), "whole number"),
    (dict(branch=-1), "cache_branch"),
    (dict(start_percent=0.8, end_percent=0.2), "must not be after"),
    (dict(end_percent=1.5), "between 0.0 and 1.0"),
    (dict(schedule="cosine"), "uniform, non-uniform"),
    (dict(power=0.0), "power"),
])
def test_bad_settings_say_what_is_allowed(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        DeepCacheConfig(**kwargs)


def test_branch_checked_against_model_depth():
    DeepCacheConfig(branch=8).check_branch(9)
    with pytest.raises(ConfigError, match="0..8"):
        DeepCacheConfig(branch=9).check_branch(9)
