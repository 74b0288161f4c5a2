"""A real ComfyUI server (COMFYUI_PATH) with this plugin, and headless Chromium driving its
front end through Playwright. Used by test_panel_e2e.py and make_ui_workflows.py.

COMFYUI_PATH      ComfyUI checkout (required)
COMFYUI_PYTHON    its Python (default: COMFYUI_PATH/../venv/bin/python, else this Python)
CHROMIUM          the browser (default: chromium / chromium-browser on PATH)

The server process and the browser come from tests/real_hosts (server_process.py, headless_chromium.py).
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path

from headless_chromium import browser_skip_reason, open_page
from server_process import ServerProcess, host_python

ROOT = Path(__file__).resolve().parents[3]
COMFYUI_PATH = os.environ.get("COMFYUI_PATH")


def comfy_python() -> str:
    return host_python(os.environ.get("COMFYUI_PYTHON"), Path(COMFYUI_PATH or ".").resolve())


def skip_reason() -> str | None:
    if not COMFYUI_PATH:
        return "COMFYUI_PATH is not set"
    return browser_skip_reason()


class ComfyServer(ServerProcess):
    """ComfyUI on a free port with its own user/output folders; the plugin is linked in
    through an extra custom_nodes folder unless the checkout already has it."""

    name = "ComfyUI"

    def __init__(self):
        super().__init__("deepcache-e2e-")

    def start(self, timeout=300):
        comfy = Path(COMFYUI_PATH).resolve()
        args = [comfy_python(), "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
                "--disable-auto-launch", "--user-directory", str(self.tmp / "user"),
                "--output-directory", str(self.tmp / "output"), "--temp-directory", str(self.tmp)]
        (self.tmp / "user").mkdir()
        (self.tmp / "output").mkdir()
        # only this checkout, under a name of its own, even if custom_nodes links it too
        self.module = "deepcache_e2e"
        nodes = self.tmp / "custom_nodes"
        nodes.mkdir()
        (nodes / self.module).symlink_to(ROOT)
        cfg = self.tmp / "extra_model_paths.yaml"
        cfg.write_text(f"deepcache_e2e:\n  base_path: {self.tmp}\n  custom_nodes: custom_nodes\n")
        args += ["--extra-model-paths-config", str(cfg), "--disable-all-custom-nodes",
                 "--whitelist-custom-nodes", self.module]
        self.launch(args, cwd=comfy)
        self.wait_until_ready("/system_stats", timeout, probe_timeout=2)
        # no first-run template dialog; NavigationMode "custom": with "legacy" the front end 1.27
        # sets a not yet registered setting while registering it (a TypeError of the host's own)
        for key, value in {"Comfy.TutorialCompleted": True, "Comfy.Canvas.NavigationMode": "custom"}.items():
            self.request(f"/settings/{key}", value, timeout=10)
        return self


@contextlib.contextmanager
def browser_page(server: ComfyServer, width=1500, height=950):
    """A page on the server's front end, with its console errors collected in page.errors."""
    with open_page(server.url, width, height, stacks=True) as page:
        page.wait_for_function("""() => {
            const app = window.comfyAPI?.app?.app, LG = window.LiteGraph ?? window.comfyAPI?.litegraph?.LiteGraph;
            return app?.graph && app?.canvas && window.DeepCachePanel && LG?.registered_node_types?.DeepCache
                && LG.registered_node_types.KSampler && app.extensionManager?.command; }""", timeout=180_000)
        page.wait_for_timeout(1000)
        page.evaluate("() => { window.app = window.app ?? window.comfyAPI.app.app }")
        yield page


def reference_plans(cases: list[dict]) -> list[list[str]]:
    """Plans from ComfyUI's KSampler sigmas and core.plan_run, in ComfyUI's Python."""
    out = subprocess.run([comfy_python(), str(Path(__file__).with_name("reference_plans.py"))],
                         input=json.dumps(cases), capture_output=True, text=True, check=True,
                         env={**os.environ, "COMFYUI_PATH": str(Path(COMFYUI_PATH).resolve())})
    return json.loads(out.stdout)


def load_ui_workflow(page, workflow: dict, name="workflow"):
    page.evaluate("async ([wf, name]) => { await app.loadGraphData(wf, true, true, name); }", [workflow, name])
    page.evaluate("() => window.DeepCachePanel.refresh()")
