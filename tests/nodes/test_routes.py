"""The front-end panel's routes (nodes/routes.py): the plan is core.schedule.plan_run over
the sigmas ComfyUI's own KSampler / BasicScheduler use; the FLOP table is core.cost's."""
import asyncio

import pytest

from deepcache_plugin.core import DeepCacheConfig, StepKind, plan_run
from deepcache_plugin.nodes import routes

from .comfy_host import import_comfy, requires_comfy


def test_bad_requests_say_what_is_wrong():
    with pytest.raises(routes.BadRequest, match="cache_interval"):
        routes.parse_config({"interval": "0"})
    with pytest.raises(routes.BadRequest, match="not a valid value"):
        routes.parse_config({"interval": "x"})
    with pytest.raises(routes.BadRequest, match="start_percent"):
        routes.parse_config({"start_percent": "0.8", "end_percent": "0.2"})
    with pytest.raises(routes.BadRequest, match="schedule"):
        routes.parse_config({"schedule": "sometimes"})
    with pytest.raises(routes.BadRequest, match="arch"):
        routes._size({}, "sd3")
    assert routes.parse_config({}) == DeepCacheConfig()
    assert routes._size({"width": "770", "height": "100"}, "sd15") == (768, 256)


@requires_comfy
def test_costs_are_core_cost_fractions_of_the_full_size_unets():
    import_comfy()
    sd15 = routes.arch_costs("sd15", 512, 512)
    assert sd15["depth"] == 12 and round(sd15["gflops_per_eval"] / 2, 1) == 401.6  # GMACs, as in test_core_cost
    s = [b["cached_fraction"] for b in sd15["branches"]]
    assert [round(v, 3) for v in s[:4]] == [0.079, 0.224, 0.380, 0.470]
    assert [b["latent"] for b in sd15["branches"][::3]] == [[64, 64], [32, 32], [16, 16], [8, 8]]
    assert sd15["branches"][9]["downscale"] == 8 and sd15["branches"][0]["pixels"] == [512, 512]
    sdxl = routes.arch_costs("sdxl", 1024, 1024)
    assert sdxl["depth"] == 9 and sdxl["branches"][0]["latent"] == [128, 128]
    assert round(sdxl["branches"][0]["cached_fraction"], 4) == 0.0145  # the reference count (SDXL b0: 1.45 %)
    assert all(a["cached_fraction"] < b["cached_fraction"] for a, b in zip(sdxl["branches"], sdxl["branches"][1:]))
    assert routes.arch_costs("sdxl_refiner", 1024, 1024)["depth"] == 12
    assert routes.costs_response({"arch": "sd15"})["archs"]["sd15"] is sd15  # cached


@requires_comfy
@pytest.mark.parametrize("q", [
    dict(steps=20, interval=3),
    dict(steps=20, interval=3, denoise=0.6, schedule="non-uniform"),
    dict(steps=30, interval=5, start_percent=0.2, end_percent=0.8, scheduler="karras"),
    dict(steps=25, interval=3, start_step=20, end_step=10000),
    dict(steps=25, interval=2, end_step=20, sampler="uni_pc"),
    dict(steps=16, interval=4, denoise=0.5, source="basic", scheduler="simple"),
    dict(steps=10, interval=1),
])
def test_plan_is_plan_run_over_the_hosts_sigmas(q):
    import_comfy()
    import comfy.model_sampling
    import comfy.samplers

    ms = comfy.model_sampling.ModelSamplingDiscrete()

    class M:
        def get_model_object(self, name):
            return ms

    if q.get("source") == "basic":
        total = int(q["steps"] / q["denoise"])
        sigmas = comfy.samplers.calculate_sigmas(ms, q["scheduler"], total)[-(q["steps"] + 1):]
    else:
        sigmas = comfy.samplers.KSampler(M(), q["steps"], "cpu", q.get("sampler"), q.get("scheduler", "normal"),
                                         q.get("denoise", 1.0)).sigmas
        if "end_step" in q and q["end_step"] < len(sigmas) - 1:
            sigmas = sigmas[:q["end_step"] + 1]
        if "start_step" in q:
            sigmas = sigmas[q["start_step"]:]
    cfg = DeepCacheConfig(interval=q["interval"], schedule=q.get("schedule", "uniform"),
                          start_percent=q.get("start_percent", 0.0), end_percent=q.get("end_percent", 1.0))
    expected = plan_run(cfg, sigmas.tolist(), ms.percent_to_sigma(cfg.start_percent),
                        ms.percent_to_sigma(cfg.end_percent))
    out = routes.plan_response({k: str(v) for k, v in q.items()} | {"arch": "sd15"})
    assert out["plan"] == [k.value for k in expected]
    assert out["cached_steps"] == sum(k is StepKind.CACHED for k in expected)
    if out["cached_steps"]:
        assert out["estimated_speedup"] > 1
    else:
        assert out["estimated_speedup"] == pytest.approx(1.0)


@requires_comfy
def test_branch_outside_the_architecture_and_empty_runs():
    import_comfy()
    out = routes.plan_response({"steps": "20", "branch": "10", "arch": "sdxl"})
    assert "must be 0..8" in out["branch_error"] and "estimated_speedup" not in out
    assert routes.plan_response({"steps": "20", "start_step": "20"})["plan"] == []
    with pytest.raises(routes.BadRequest, match="steps"):
        routes.plan_response({"steps": "0"})


@requires_comfy
def test_http_routes():
    aiohttp = pytest.importorskip("aiohttp")
    from aiohttp.test_utils import TestClient, TestServer
    import_comfy()

    async def main():
        table = aiohttp.web.RouteTableDef()
        routes.register(table)
        app = aiohttp.web.Application()
        app.add_routes(table)
        async with TestClient(TestServer(app)) as client:
            r = await client.get("/deepcache/plan", params={"steps": "6", "interval": "3", "arch": "sd15"})
            assert r.status == 200
            body = await r.json()
            assert body["plan"] == ["refresh", "cached", "cached", "refresh", "cached", "cached"]
            r = await client.get("/deepcache/plan", params={"steps": "6", "interval": "0"})
            assert r.status == 400 and "cache_interval" in (await r.json())["error"]
            r = await client.get("/deepcache/costs", params={"arch": "sd15"})
            assert (await r.json())["archs"]["sd15"]["depth"] == 12

    asyncio.run(main())
