"""End to end: the panel in headless Chromium against a real ComfyUI server (COMFYUI_PATH).

Loads the example workflows, checks the strip against plans computed independently
(ComfyUI's KSampler sigmas + core.plan_run, reference_plans.py) for random settings, runs
the SD1.5 workflow, checks the stats, the sidebar and a graph without DeepCache nodes,
saves screenshots and asserts no console errors of ours.

Screenshots go to DEEPCACHE_FIGURES (default: pytest's tmp_path); the README's figure is
docs/figures/comfyui-deepcache-node.png:  DEEPCACHE_FIGURES=docs/figures pytest tests/e2e
"""
import json
import os
import random
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from comfy_browser import ROOT, ComfyServer, browser_page, load_ui_workflow, reference_plans, skip_reason  # noqa: E402

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")
N_RANDOM = int(os.environ.get("DEEPCACHE_E2E_CASES", "24"))
SCHEDULERS = ["normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta"]
SAMPLERS = ["euler", "dpmpp_2m", "uni_pc", "dpm_2", "euler_ancestral"]

SET_JS = """
([id, values]) => {
  for (const [nodeId, vals] of Object.entries(values)) {
    const n = app.graph.getNodeById(nodeId);
    for (const [k, v] of Object.entries(vals)) {
      const w = n.widgets.find((w) => w.name === k);
      w.value = v;
      w.callback?.(v);
    }
  }
  window.DeepCachePanel.refresh();
}
"""
WAIT_JS = """
([id, expect]) => {
  const s = window.DeepCachePanel.state(id);
  if (!s || !s.key || s.loadedKey !== s.key) return false;
  return Object.entries(expect).every(([k, v]) => s.params[k] === String(v));
}
"""


def ui_workflow(name, ckpt=None):
    wf = json.loads((ROOT / "example_workflows" / f"{name}.json").read_text())
    if ckpt:
        for n in wf["nodes"]:
            if n["type"] == "CheckpointLoaderSimple":
                n["widgets_values"][0] = ckpt
    return wf


def node_id(wf, type_, nth=0):
    return [n["id"] for n in wf["nodes"] if n["type"] == type_][nth]


def random_case(rng, advanced=False):
    start = round(rng.choice([0.0, 0.0, rng.uniform(0, 0.6)]), 2)
    end = round(rng.choice([1.0, 1.0, rng.uniform(start, 1.0)]), 2)
    c = dict(interval=rng.choice([1, 2, 3, 3, 4, 5, 7, 10]), schedule=rng.choice(["uniform", "non-uniform"]),
             start_percent=start, end_percent=end, center=round(rng.uniform(0, 1), 2),
             power=round(rng.uniform(0.5, 4.0) * 20) / 20, steps=rng.randint(1, 60),
             scheduler=rng.choice(SCHEDULERS), sampler=rng.choice(SAMPLERS))
    if advanced:
        c["start_step"] = rng.randint(0, c["steps"])
        c["end_step"] = rng.choice([10000, rng.randint(c["start_step"], c["steps"] + 2)])
    else:
        c["denoise"] = rng.choice([1.0, round(rng.uniform(0.15, 1.0), 2)])
    return c


def set_case(page, dc, sampler, c, advanced=False):
    dc_vals = {"cache_interval": c["interval"], "schedule": c["schedule"], "start_percent": c["start_percent"],
               "end_percent": c["end_percent"], "center": c["center"], "power": c["power"]}
    s_vals = {"steps": c["steps"], "scheduler": c["scheduler"], "sampler_name": c["sampler"]}
    if advanced:
        s_vals |= {"start_at_step": c["start_step"], "end_at_step": c["end_step"]}
    else:
        s_vals["denoise"] = c["denoise"]
    page.evaluate(SET_JS, [dc, {str(dc): dc_vals, str(sampler): s_vals}])
    expect = {"interval": c["interval"], "steps": c["steps"], "scheduler": c["scheduler"],
              "sampler": c["sampler"], "start_percent": c["start_percent"], "end_percent": c["end_percent"]}
    expect |= {"start_step": c["start_step"], "end_step": c["end_step"]} if advanced else {"denoise": c["denoise"]}
    try:
        page.wait_for_function(WAIT_JS, arg=[dc, expect], timeout=60_000)
    except Exception:
        st = page.evaluate("(id) => window.DeepCachePanel.state(id)", dc)
        raise AssertionError(f"strip did not update: expected {expect}, state {st['params']} {st['error']}") from None
    return page.evaluate("(id) => window.DeepCachePanel.state(id)", dc)


def strip_dom(page, dc):
    """The cells as drawn on the node (the DOM, not the state)."""
    return page.evaluate("""(id) => {
        const n = app.graph.getNodeById(id);
        return [...n.__deepcache.root.querySelectorAll('.deepcache-strip .dc-cell')].map((c) => c.dataset.kind);
    }""", dc)


def our_errors(page):
    """Console errors, less the host's own failed loads (fresh user folder, no network)."""
    ours = [f for f in page.failed if re.search("deepcache", f, re.I)]
    others = [e for e in page.errors if not e.startswith("Failed to load resource")]
    return ours + others


@pytest.fixture(scope="module")
def server():
    s = ComfyServer().start()
    yield s
    s.stop()


def test_panel_end_to_end(server, figures):
    info = server.request("/object_info/CheckpointLoaderSimple", timeout=60)
    ckpts = info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
    ckpt = next((c for c in ckpts if "sd15" in c.lower() or "v1" in c.lower()), ckpts[0] if ckpts else None)
    rng = random.Random(4)
    report = {}
    with browser_page(server) as page:
        # 0. a graph without DeepCache nodes: nothing breaks, the sidebar says so
        page.evaluate("async () => { await app.loadGraphData(); }")
        page.evaluate("() => app.extensionManager.command.execute('Workspace.ToggleSidebarTab.deepcache')")
        page.wait_for_selector(".deepcache-sidebar", timeout=20_000)
        assert "No DeepCache node" in page.inner_text(".deepcache-sidebar")
        page.evaluate("() => app.extensionManager.command.execute('Workspace.ToggleSidebarTab.deepcache')")

        # 1. SD1.5 txt2img: random settings, strip == reference plan
        wf = ui_workflow("DeepCache_SD15_txt2img", ckpt)
        load_ui_workflow(page, wf, "DeepCache_SD15_txt2img")
        dc, ks = node_id(wf, "DeepCache"), node_id(wf, "KSampler")
        cases = [random_case(rng) for _ in range(N_RANDOM)]
        got = []
        for c in cases:
            st = set_case(page, dc, ks, c)
            assert st["error"] is None, (c, st["error"])
            got.append((st["plan"], strip_dom(page, dc)))
        # 2. SDXL base + refiner: KSamplerAdvanced start/end steps on both nodes
        wf2 = ui_workflow("DeepCache_SDXL_base_refiner")
        load_ui_workflow(page, wf2, "DeepCache_SDXL_base_refiner")
        adv_cases = []
        for nth in (0, 1):
            dc2, ks2 = node_id(wf2, "DeepCache", nth), node_id(wf2, "KSamplerAdvanced", nth)
            page.wait_for_function(WAIT_JS, arg=[dc2, {}], timeout=60_000)
            st = page.evaluate("(id) => window.DeepCachePanel.state(id)", dc2)
            assert st["resp"]["arch"]["arch"] == ("sdxl", "sdxl_refiner")[nth]
            for _ in range(4):
                c = random_case(rng, advanced=True)
                st = set_case(page, dc2, ks2, c, advanced=True)
                adv_cases.append(c)
                got.append((st["plan"], strip_dom(page, dc2)))
        expected = reference_plans(cases + adv_cases)
        mismatches = [(c, e, g) for c, e, (g, _) in zip(cases + adv_cases, expected, got) if e != g]
        assert not mismatches, mismatches[:3]
        assert all(plan == dom for plan, dom in got)  # the DOM shows the plan
        report["compared"] = len(expected)

        # 3. run the SD1.5 workflow (small, so it is quick on a CPU) and check the stats
        wf = ui_workflow("DeepCache_SD15_txt2img", ckpt)
        load_ui_workflow(page, wf, "DeepCache_SD15_txt2img")
        lat = node_id(wf, "EmptyLatentImage")
        page.evaluate(SET_JS, [dc, {str(lat): {"width": 256, "height": 256},
                                    str(ks): {"steps": 12, "denoise": 1.0, "scheduler": "normal",
                                              "sampler_name": "euler"},
                                    str(dc): {"cache_interval": 3, "cache_branch": 0, "schedule": "uniform",
                                              "start_percent": 0.0, "end_percent": 1.0}}])
        page.wait_for_function(WAIT_JS, arg=[dc, {"steps": 12, "interval": 3, "width": 256}], timeout=60_000)
        strip = page.evaluate("(id) => window.DeepCachePanel.state(id)", dc)
        page.evaluate("async () => { await app.queuePrompt(0, 1); }")
        page.wait_for_function("(id) => window.DeepCachePanel.state(id)?.stats", arg=dc, timeout=900_000)
        st = page.evaluate("(id) => window.DeepCachePanel.state(id)", dc)
        stats = st["stats"]
        assert stats["plan"] == strip["plan"] == strip_dom(page, dc)
        assert stats["cached_steps"] == strip["counts"]["cached"] and stats["full_steps"] == strip["counts"]["full"]
        assert stats["seconds"] > 0 and stats["speedup"] > 1
        run_text = page.evaluate("(id) => app.graph.getNodeById(id).__deepcache.run.textContent", dc)
        assert run_text.startswith(f"last run: {stats['full_steps']} full / {stats['cached_steps']} cached steps")
        report["run"] = {k: stats[k] for k in ("full_steps", "cached_steps", "seconds", "speedup")}

        # 4. screenshot of the node with its strip and stats
        page.evaluate("""(id) => { const c = app.canvas, n = app.graph.getNodeById(id);
            c.deselectAll?.(); c.ds.scale = 1.25; c.centerOnNode(n); c.setDirty(true, true); }""", dc)
        page.wait_for_timeout(800)
        box = page.evaluate("""(id) => {
            const c = app.canvas, n = app.graph.getNodeById(id), r = c.canvas.getBoundingClientRect();
            const s = c.ds.scale, [ox, oy] = c.ds.offset;
            return {x: r.left + (n.pos[0] + ox) * s, y: r.top + (n.pos[1] - 30 + oy) * s,
                    width: n.size[0] * s, height: (n.size[1] + 30) * s}; }""", dc)
        pad = 24
        clip = {"x": max(box["x"] - pad, 0), "y": max(box["y"] - pad, 0),
                "width": box["width"] + 2 * pad, "height": box["height"] + 2 * pad}
        page.screenshot(path=str(figures / "comfyui-deepcache-node.png"), clip=clip)

        # 5. the sidebar lists the node with its stats; a click selects it
        page.evaluate("() => app.canvas.deselectAll()")
        page.evaluate("() => app.extensionManager.command.execute('Workspace.ToggleSidebarTab.deepcache')")
        page.wait_for_selector(f".deepcache-sidebar .dc-item[data-node-id='{dc}']", timeout=20_000)
        page.wait_for_function("() => /last run/.test(document.querySelector('.deepcache-sidebar').innerText)")
        page.click(f".deepcache-sidebar .dc-item[data-node-id='{dc}']")
        selected = page.evaluate("() => Object.keys(app.canvas.selected_nodes ?? {}).map(String)")
        assert str(dc) in selected
        page.screenshot(path=str(figures / "comfyui-deepcache-sidebar.png"))

        page.wait_for_timeout(500)
        alerts = page.evaluate("() => [...document.querySelectorAll('.p-toast-message')].map((e) => e.innerText)")
        assert not [a for a in alerts if "schema" in a or "DeepCache" in a], alerts
        errors = our_errors(page)
        report["console_errors"] = errors
        report["host_failed_loads"] = page.failed
        (figures / "e2e_report.json").write_text(json.dumps(report, indent=1))
        assert not errors, errors
