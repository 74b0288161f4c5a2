"""The bench code runs on tiny configurations (the benchmarks themselves are commands)."""
import json

import pytest
import torch

from deepcache_plugin.bench import report, speed
from deepcache_plugin.bench.common import interleaved_times, machine, median_ratio


def test_machine_and_timing_helpers():
    m = machine()
    assert m["cores"] >= 1 and m["torch"] == torch.__version__
    calls = []
    t = interleaved_times({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1)
    assert len(t["a"]) == len(t["b"]) == 3 and calls.count("a") == 4
    assert median_ratio([2.0, 4.0, 6.0], [1.0, 2.0, 2.0]) == 2.0


@pytest.mark.parametrize("name", ["tiny-sd15", "tiny-sdxl"])
def test_speed_runs_on_tiny_unets(name):
    torch.set_num_threads(1)
    r = speed.run_model(name, repeats=1, log=lambda *a: None)
    assert r["depth"] == (12 if name == "tiny-sd15" else 9)
    for b in ("0", "1", "2", "3"):
        row = r["branches"][b]
        assert 0 < row["cached_over_full_flops"] < 1
        for n in ("2", "3", "5", "10"):
            cell = row["intervals"][n]
            assert cell["ceiling"] > 1 and cell["measured"] > 0 and cell["efficiency"] > 0
    assert r["branches"]["0"]["cached_over_full_flops"] < r["branches"]["3"]["cached_over_full_flops"]
    assert "overhead_interval1" in r and r["seconds_median"]["F"] > 0


def test_speed_command_writes_json(tmp_path):
    out = tmp_path / "speed.json"
    speed.main(["--models", "tiny-sd15", "--repeats", "1", "--out", str(out), "--no-docs"])
    data = json.loads(out.read_text())
    assert "tiny-sd15" in data["models"] and data["machine"]["cores"] >= 1


def test_quality_command_and_figures(tmp_path):
    from deepcache_plugin.bench import quality
    out = tmp_path / "quality.json"
    r = quality.main(["--per-class", "1", "--steps", "10", "--intervals", "5", "--branches", "0",
                      "--no-tune", "--out", str(out), "--figures", str(tmp_path), "--no-docs"])
    assert {row["schedule"] for row in r["rows"]} == {"uniform", "non-uniform"}
    assert all(row["psnr"] > 0 and 0 <= row["accuracy"] <= 1 for row in r["rows"])
    assert (tmp_path / "frontier.png").stat().st_size > 1000
    assert (tmp_path / "schedules.png").stat().st_size > 1000


def test_report_renders_from_results(tmp_path, monkeypatch):
    from deepcache_plugin.bench import quality
    q = quality.main(["--per-class", "1", "--steps", "6", "--intervals", "3", "--branches", "0", "1",
                      "--no-tune", "--out", str(tmp_path / "q.json"), "--figures", "", "--no-docs"])
    s = speed.main(["--models", "tiny-sd15", "--repeats", "1", "--out", str(tmp_path / "s.json"), "--no-docs"])
    files = {"speed.json": s, "quality.json": q, "demo.json": None}
    monkeypatch.setattr(report, "read_json", lambda name: json.loads(json.dumps(files[name], default=str)))
    text = report.render()
    assert "tiny SD1.5-shaped" in text and "Non-uniform vs uniform" in text and "overhead at interval 1" in text
