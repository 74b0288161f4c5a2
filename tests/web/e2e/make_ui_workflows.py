"""Makes the UI-format example workflows (example_workflows/*.json) from the API-format ones
(example_workflows/api/*.json) in a real ComfyUI front end: load with app.loadApiJson, lay
out in columns, app.graph.serialize(). Needs what the end-to-end test needs:

    COMFYUI_PATH=/path/to/ComfyUI python tests/e2e/make_ui_workflows.py
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "real_hosts"))  # under pytest: ../../conftest.py
from comfy_browser import ROOT, ComfyServer, browser_page, skip_reason  # noqa: E402

LAYOUT_JS = """
async ([api, name]) => {
  await app.loadApiJson(api, name);
  const g = app.graph;
  const nodes = g._nodes;
  const depth = new Map();
  const dep = (n, seen = new Set()) => {
    if (depth.has(n.id)) return depth.get(n.id);
    if (seen.has(n.id)) return 0;
    seen.add(n.id);
    let d = 0;
    for (const inp of n.inputs ?? []) {
      if (inp.link == null) continue;
      const l = g.links.get ? g.links.get(inp.link) : g.links[inp.link];
      const o = l && g.getNodeById(l.origin_id);
      if (o) d = Math.max(d, dep(o, seen) + 1);
    }
    depth.set(n.id, d);
    return d;
  };
  nodes.forEach((n) => dep(n));
  const cols = [];
  for (const n of nodes) {
    for (const w of n.widgets ?? []) if (w.name === "control_after_generate") w.value = "fixed";
    if (n.comfyClass === "DeepCache") n.setSize([400, Math.max(n.computeSize()[1], 300)]);
    else if (n.comfyClass === "CLIPTextEncode") n.setSize([360, 150]);
    else if (n.comfyClass === "SaveImage" || n.comfyClass === "LoadImage") n.setSize([300, 330]);
    else n.setSize([Math.max(n.size[0], 300), n.computeSize()[1]]);
    (cols[depth.get(n.id)] ??= []).push(n);
  }
  let x = 40;
  for (const col of cols) {
    if (!col) continue;
    let y = 60;
    col.sort((a, b) => Number(a.id) - Number(b.id));
    let w = 0;
    for (const n of col) {
      n.pos = [x, y];
      y += n.size[1] + (n.comfyClass === "DeepCache" ? 140 : 70);
      w = Math.max(w, n.size[0]);
    }
    x += w + 60;
  }
  g.setDirtyCanvas(true, true);
  return JSON.stringify(g.serialize());  // drops undefined fields (null would fail the schema)
}
"""


def main():
    why = skip_reason()
    if why:
        sys.exit(why)
    server = ComfyServer().start()
    try:
        with browser_page(server) as page:
            for api_path in sorted((ROOT / "example_workflows" / "api").glob("*.json")):
                ui = json.loads(page.evaluate(LAYOUT_JS, [json.loads(api_path.read_text()), api_path.stem]))
                ui.pop("id", None)
                out = ROOT / "example_workflows" / api_path.name
                out.write_text(json.dumps(ui, indent=1) + "\n")
                print(out, len(ui["nodes"]), "nodes")
            if page.errors:
                print("console errors:", *page.errors, sep="\n  ")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
