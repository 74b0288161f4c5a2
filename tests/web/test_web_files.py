"""Static checks of the front-end files (no browser, no ComfyUI)."""
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_node_help_docs_exist_for_the_node_and_locale_copy_matches():
    doc = ROOT / "web" / "docs" / "DeepCache.md"
    assert doc.read_text().startswith("# DeepCache")
    # the front end asks docs/<Node>/<locale>.md first, then docs/<Node>.md
    assert (ROOT / "web" / "docs" / "DeepCache" / "en.md").read_text() == doc.read_text()


def test_only_browser_modules_are_js_files_in_web():
    # ComfyUI imports every .js under WEB_DIRECTORY: tests must not be .js files there
    js = sorted(p.relative_to(ROOT / "web").as_posix() for p in (ROOT / "web").rglob("*.js"))
    assert js == ["deepcache.js", "lib/graph.js", "lib/plan.js"]
    for p in (ROOT / "web" / "lib").glob("*.js"):
        assert "scripts/app.js" not in p.read_text()  # plain modules, importable by node --test
    main = (ROOT / "web" / "deepcache.js").read_text()
    assert 'from "../../scripts/app.js"' in main and 'from "../../scripts/api.js"' in main


def test_example_workflows_api_and_ui_describe_the_same_graph():
    api_dir = ROOT / "example_workflows" / "api"
    names = sorted(p.stem for p in api_dir.glob("*.json"))
    assert names == ["DeepCache_SD15_ControlNet", "DeepCache_SD15_img2img", "DeepCache_SD15_txt2img",
                     "DeepCache_SDXL_base_refiner"]
    for name in names:
        api = json.loads((api_dir / f"{name}.json").read_text())
        ui = json.loads((ROOT / "example_workflows" / f"{name}.json").read_text())
        assert sorted(int(k) for k in api) == sorted(n["id"] for n in ui["nodes"])
        assert {k: v["class_type"] for k, v in api.items()} == {str(n["id"]): n["type"] for n in ui["nodes"]}
        n_links = sum(isinstance(v, list) for node in api.values() for v in node["inputs"].values())
        assert len(ui["links"]) == n_links
        dcs = [n for n in api.values() if n["class_type"] == "DeepCache"]
        assert dcs and all(n["inputs"]["cache_interval"] == 3 for n in dcs)
    sdxl = json.loads((api_dir / "DeepCache_SDXL_base_refiner.json").read_text())
    assert sum(n["class_type"] == "DeepCache" for n in sdxl.values()) == 2


def test_stats_event_name_matches_the_python_side():
    report = (ROOT / "nodes" / "report.py").read_text()
    event = re.search(r'STATS_EVENT = "([^"]+)"', report).group(1)
    assert f'const STATS_EVENT = "{event}"' in (ROOT / "web" / "deepcache.js").read_text()
