"""A real ComfyUI server (COMFYUI_PATH) with this plugin, and headless Chromium driving its
front end through Playwright. Used by test_panel_e2e.py and make_ui_workflows.py.

COMFYUI_PATH      ComfyUI checkout (required)
COMFYUI_PYTHON    its Python (default: COMFYUI_PATH/../venv/bin/python, else this Python)
CHROMIUM          the browser (default: chromium / chromium-browser on PATH)
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]


def chromium_path() -> str | None:
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def comfy_python() -> str:
    if os.environ.get("COMFYUI_PYTHON"):
        return os.environ["COMFYUI_PYTHON"]
    venv = Path(COMFYUI_PATH or ".").resolve().parent / "venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def skip_reason() -> str | None:
    if not COMFYUI_PATH:
        return "COMFYUI_PATH is not set"
    if not chromium_path():
        return "chromium is not installed"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright (Python client) is not installed"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """ComfyUI on a free port with its own user/output folders; the plugin is linked in
    through an extra custom_nodes folder unless the checkout already has it."""

    def __init__(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="deepcache-e2e-"))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.log_path = self.tmp / "server.log"

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
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, cwd=comfy, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited: {self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(self.url + "/system_stats", timeout=2).read()
                break
            time.sleep(1)
        else:
            raise RuntimeError("ComfyUI did not start in time")
        # no first-run template dialog; NavigationMode "custom": with "legacy" the front end 1.27
        # sets a not yet registered setting while registering it (a TypeError of the host's own)
        for key, value in {"Comfy.TutorialCompleted": True, "Comfy.Canvas.NavigationMode": "custom"}.items():
            req = urllib.request.Request(f"{self.url}/settings/{key}", data=json.dumps(value).encode(), method="POST")
            urllib.request.urlopen(req, timeout=10).read()
        return self

    def get(self, path):
        return json.loads(urllib.request.urlopen(self.url + path, timeout=60).read())

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if getattr(self, "log", None):
            self.log.close()

    def server_log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def browser_page(server: ComfyServer, width=1500, height=950):
    """A page on the server's front end, with its console errors collected in page.errors."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.errors = []
            page.warnings = []

            def on_console(msg):
                if msg.type == "error":
                    page.errors.append(msg.text)
                elif msg.type == "warning":
                    page.warnings.append(msg.text)
            page.on("console", on_console)
            page.on("pageerror", lambda e: page.errors.append(f"pageerror: {e}\n{e.stack}"))
            page.failed = []
            page.on("response", lambda r: r.status >= 400 and page.failed.append(f"{r.status} {r.url}"))
            page.on("requestfailed", lambda r: page.failed.append(f"failed {r.url} {r.failure}"))
            page.goto(server.url, wait_until="domcontentloaded")
            page.wait_for_function("""() => {
                const app = window.comfyAPI?.app?.app, LG = window.LiteGraph ?? window.comfyAPI?.litegraph?.LiteGraph;
                return app?.graph && app?.canvas && window.DeepCachePanel && LG?.registered_node_types?.DeepCache
                    && LG.registered_node_types.KSampler && app.extensionManager?.command; }""", timeout=180_000)
            page.wait_for_timeout(1000)
            page.evaluate("() => { window.app = window.app ?? window.comfyAPI.app.app }")
            yield page
        finally:
            browser.close()


def reference_plans(cases: list[dict]) -> list[list[str]]:
    """Plans from ComfyUI's KSampler sigmas and core.plan_run, in ComfyUI's Python."""
    out = subprocess.run([comfy_python(), str(Path(__file__).with_name("reference_plans.py"))],
                         input=json.dumps(cases), capture_output=True, text=True, check=True,
                         env={**os.environ, "COMFYUI_PATH": str(Path(COMFYUI_PATH).resolve())})
    return json.loads(out.stdout)


def load_ui_workflow(page, workflow: dict, name="workflow"):
    page.evaluate("async ([wf, name]) => { await app.loadGraphData(wf, true, true, name); }", [workflow, name])
    page.evaluate("() => window.DeepCachePanel.refresh()")
