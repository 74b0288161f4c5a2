"""bench.server_rounds against a stand-in for the harness driver (the real run needs a server)."""
import json

import pytest

from deepcache_plugin.bench import server_rounds

FAKE_DRIVER = '''
SECONDS = {None: 60.0, 1: 61.0, 3: 24.0}

def base_workflow(ckpt, sampler, steps, seed, size=256, prefix=""):
    return {"interval": None, "steps": steps}

def with_patch(wf, class_type, inputs):
    return dict(wf, interval=inputs["cache_interval"])

def sampler_stats(r):
    return {"ksampler_s": r["s"], "ksampler_cpu_s": 2 * r["s"]}

class Comfy:
    order = []

    def __init__(self, server, pid, quiet):
        pass

    def run(self, wf):
        Comfy.order.append(wf["interval"])
        return {"ok": True, "s": SECONDS[wf["interval"]], "busy_before": 0.0}

    def get_json(self, path):
        assert "arch=sd15" in path and "width=256" in path
        return {"archs": {"sd15": {"branches": [{"cached_fraction": 0.0658}]}}}
'''


def test_rotated_rounds_and_their_summary(tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(FAKE_DRIVER)
    log = tmp_path / "server.log"
    log.write_text("".join(f"INFO DeepCache: 7 full / 13 cached steps, U-Net x2.5{i} measured\n" for i in range(3)))
    out = tmp_path / "rounds.json"
    server_rounds.main(["--driver", str(driver), "--rounds", "3", "--server-log", str(log), "--out", str(out)])
    data = json.loads(out.read_text())
    assert [r["variant"] for r in data["rows"]] == ["baseline", "interval1", "interval3", "interval1", "interval3",
                                                     "baseline", "interval3", "baseline", "interval1"]
    s = data["summary"]
    assert s["speedup_paired"] == [pytest.approx(2.5)] * 3 and s["first_over_later_median"] == 1.0
    assert s["interval1_over_baseline_median"] == pytest.approx(61 / 60)
    assert s["flop_ceiling_of_run"] == pytest.approx(20 / (7 + 13 * 0.0658))
    assert s["node_reports"][0].startswith("DeepCache: 7 full / 13 cached steps, U-Net x2.50")
