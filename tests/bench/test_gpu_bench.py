"""bench/gpu in its CPU smoke mode: tiny U-Nets, eager and torch.compile (backend "eager"), every U-Net call
through core.call_unet. The GPU figures themselves come from `python3 -m bench.gpu` on a CUDA machine."""
import json
import math

import pytest
import torch

from deepcache_plugin.bench import gpu

VARIANTS = {"baseline", "n3-b0", "n5-b0", "refresh-b0", "n3-b1", "n5-b1"}
COMPILED = {"baseline", "n3-b0", "n5-b0", "refresh-b0"}  # smoke compiles the first model at the first branch


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "gpu.json"
    returned = gpu.main(["--smoke", "--out", str(out)])
    return returned, json.loads(out.read_text()), out


def _numbers(obj):
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return
    if isinstance(obj, (int, float)):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)


def test_smoke_writes_every_variant_with_finite_numbers(smoke):
    returned, data, _ = smoke
    assert data["smoke"] and data["settings"]["dtype"] == "float32" and data["settings"]["compile_backend"] == "eager"
    assert data["machine"]["torch"] == torch.__version__ and "cuda" in data["machine"]
    assert list(data["models"]) == ["tiny-sd15", "tiny-sdxl"]  # SD1.5 first, then SDXL
    assert set(data["models"]["tiny-sd15"]["modes"]) == {"eager", "compiled"}
    assert set(data["models"]["tiny-sdxl"]["modes"]) == {"eager"}
    # the one thing a CPU cannot do is said, not silently dropped
    assert any("graphs" in s and "CUDA" in s for s in data["skipped"]) and not data["complete"]
    for name, m in data["models"].items():
        assert len(m["flops"]["cached_fraction"]) == m["depth"]
        for mode, r in m["modes"].items():
            assert set(r["variants"]) == (VARIANTS if mode == "eager" else COMPILED), (name, mode)
            assert not r["skipped"] and r["rounds"] == 1
            for key, v in r["variants"].items():
                assert v["finite"] and v["disabled"] is None, (name, mode, key)
                assert v["ms_per_step"] > 0 and v["speedup"] > 0 and v["timed_runs"] == 1
                assert v["steps"] == 5 and v["full_calls"] + v["cached_calls"] == 5
                assert v["peak_gib"] is None  # CPU: no CUDA allocator
    assert all(math.isfinite(x) for x in _numbers(data))
    assert returned["table_md"] == data["table_md"]
    assert data["table_md"].count("\n") == 2 + 2 * len(VARIANTS) + len(COMPILED) - 1
    assert data["first_deepcache_run"]["process"]["variant"] == "DeepCache N=3 b=0"


def test_deepcache_runs_cached_calls_under_their_flop_ceiling(smoke):
    _, data, _ = smoke
    for name, m in data["models"].items():
        for mode, r in m["modes"].items():
            for key, v in r["variants"].items():
                if key == "baseline" or key.startswith("refresh"):
                    assert v["cached_calls"] == 0
                    assert v["ceiling"] in (None, 1.0)
                    continue
                n = v["interval"]
                assert v["cached_calls"] == 5 - math.ceil(5 / n), (name, mode, key)
                assert v["cached_ms_per_call"] > 0 and v["full_ms_per_call"] > 0
                frac = m["flops"]["cached_fraction"][str(v["branch"])]
                assert 0 < frac < 1 and v["cached_fraction_flops"] == frac
                assert v["ceiling"] == pytest.approx(5 / (5 - v["cached_calls"] + v["cached_calls"] * frac))
                assert v["efficiency"] == pytest.approx(v["speedup"] / v["ceiling"])
                assert v["vs_baseline"]["max_abs"] > 0  # cached steps do change the result


def test_exactness_interval1_and_compiled(smoke):
    _, data, _ = smoke
    for name, m in data["models"].items():
        for mode, r in m["modes"].items():
            # DeepCache's full forward on every step (store the deep feature, never read it) is the baseline
            assert r["variants"]["refresh-b0"]["vs_baseline"]["equal"], (name, mode)
    compiled = data["models"]["tiny-sd15"]["modes"]["compiled"]
    for key, v in compiled["variants"].items():
        # backend "eager" runs the traced graphs' own ops: bit for bit the eager runs
        assert v["vs_eager"]["equal"], key
        assert v["repeatable"], key


def test_compiled_deepcache_is_two_static_graphs(smoke):
    _, data, _ = smoke
    compiled = data["models"]["tiny-sd15"]["modes"]["compiled"]
    calls = compiled["first_calls"]
    assert set(calls) == {"plain", "full-b0", "shallow-b0"}
    for name, st in calls.items():
        assert st["kind"] == "compile" and st["seconds"] > 0
        assert st["graphs"] == 1 and st["graph_breaks"] == 0, (name, st)
    first = compiled["variants"]["n3-b0"]
    assert first["first_graphs"] == ["full-b0", "shallow-b0"]
    assert first["first_call_s"] == pytest.approx(calls["full-b0"]["seconds"] + calls["shallow-b0"]["seconds"])
    assert compiled["variants"]["n5-b0"]["first_graphs"] == []  # the same two graphs, no recompilation
    assert first["first_run_s"] > first["first_call_s"] > 0


def test_table_command_prints_a_results_file(smoke, capsys):
    _, data, out = smoke
    again = gpu.main(["--table", str(out)])
    printed = capsys.readouterr().out
    assert again["models"].keys() == data["models"].keys()
    assert "| model | mode | variant | ms/step |" in printed and "DeepCache N=5 b=1" in printed


def test_budget_stops_and_keeps_what_it_measured(tmp_path):
    out = tmp_path / "gpu.json"
    r = gpu.main(["--smoke", "--models", "tiny-sd15", "--budget", "4", "--out", str(out)])
    data = json.loads(out.read_text())
    assert not data["complete"] and any("budget" in s for s in data["skipped"]) and r["skipped"] == data["skipped"]
    assert "compiled" not in data["models"].get("tiny-sd15", {}).get("modes", {})
    assert all(math.isfinite(x) for x in _numbers(data))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_without_cuda_the_gpu_run_says_so_and_fails(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    with pytest.raises(SystemExit) as e:
        gpu.main(["--out", str(out)])
    assert e.value.code != 0 and "no CUDA device" in capsys.readouterr().err and not out.exists()
