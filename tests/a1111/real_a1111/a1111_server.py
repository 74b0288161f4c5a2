"""A real AUTOMATIC1111 web UI (A1111_PATH) with this extension, driven over its HTTP API.

A1111_PATH         the webui folder (required; the suite skips without it)
A1111_PYTHON       its Python (default: A1111_PATH/../venv/bin/python, else this Python)
A1111_ENV_SH       a shell file of exports to source (default: A1111_PATH/../env.sh if present;
                   it carries HF_HOME/HF_HUB_OFFLINE for the offline tokenizer)
A1111_CKPT         checkpoint to load (default: models/Stable-diffusion/random_sd15.safetensors if present)
A1111_THREADS      OMP/torch threads of the server (default 1: two busy cores collapse with more)
A1111_EXTRA_ARGS   more launch.py arguments
CHROMIUM           the browser for the UI tests (default: chromium / chromium-browser on PATH)
"""
from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

A1111_PATH = os.environ.get("A1111_PATH")
CONTROLNET_EXT = "sd-webui-controlnet"
CONTROLNET_MODEL = "control_random_sd15"
HERE = Path(__file__).resolve().parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]

# every generation of the suite: tiny, few steps (a 64 px SD1.5 step is ~2 s on one busy CPU core)
BASE = dict(prompt="a red lighthouse on a cliff, oil painting", negative_prompt="", seed=1234, steps=5,
            width=64, height=64, cfg_scale=7.0, sampler_name="Euler", scheduler="Automatic",
            batch_size=1, n_iter=1, send_images=True, save_images=False)
SUMMARY_RE = re.compile(r"\[DeepCache\] DeepCache: (\d+) full / (\d+) cached steps([^\n]*)")


def skip_reason() -> str | None:
    if not A1111_PATH:
        return "A1111_PATH is not set"
    if not (Path(A1111_PATH) / "launch.py").exists():
        return f"A1111_PATH={A1111_PATH} has no launch.py"
    return None


def browser_skip_reason() -> str | None:
    if not chromium_path():
        return "chromium is not installed"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright (Python client) is not installed"
    return None


def chromium_path() -> str | None:
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def webui() -> Path:
    return Path(A1111_PATH).resolve()


def a1111_python() -> str:
    if os.environ.get("A1111_PYTHON"):
        return os.environ["A1111_PYTHON"]
    venv = webui().parent / "venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def controlnet_installed() -> bool:
    return (webui() / "extensions" / CONTROLNET_EXT / "scripts" / "controlnet.py").exists()


def server_env() -> dict:
    env = dict(os.environ)
    env_sh = os.environ.get("A1111_ENV_SH") or str(webui().parent / "env.sh")
    if Path(env_sh).exists():
        out = subprocess.run(["bash", "-c", f". {shlex.quote(env_sh)} && env -0"], capture_output=True,
                             check=True, env=env).stdout
        env = dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)
    threads = os.environ.get("A1111_THREADS", "1")
    env.update({"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1",
                "GRADIO_ANALYTICS_ENABLED": "False", "DO_NOT_TRACK": "1",
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HTTPError(AssertionError):
    def __init__(self, status, body, log_tail):
        super().__init__(f"HTTP {status}: {body[:2000]}\n--- server log (tail) ---\n{log_tail}")
        self.status, self.body = status, body


class Result:
    """One API generation: decoded images, the info JSON, the server console output it caused."""

    def __init__(self, response: dict, log: str, seconds: float):
        self.response = response
        self.info = json.loads(response.get("info") or "{}")
        self.log = log
        self.seconds = seconds
        self._images = None

    @property
    def images(self):
        if self._images is None:
            self._images = [decode_image(b) for b in self.response.get("images") or []]
        return self._images

    @property
    def image(self):
        return self.images[0]

    @property
    def infotext(self) -> str:
        return (self.info.get("infotexts") or [""])[0]

    def summaries(self) -> list[tuple[int, int, str]]:
        """(full, cached, rest of line) of each '[DeepCache] DeepCache: F full / C cached steps' line."""
        return [(int(f), int(c), rest) for f, c, rest in SUMMARY_RE.findall(self.log)]


def decode_image(b64: str):
    import numpy as np
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64.split(",", 1)[-1]))).convert("RGB"))


def encode_image(arr) -> str:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def deepcache_args(enabled=True, interval=3, branch=0, schedule="uniform", start=0.0, end=1.0,
                   hr_enabled=False, hr_interval=3, hr_start=0.0) -> dict:
    """alwayson_scripts entry of the DeepCache script (its ui() values, in order)."""
    return {"DeepCache": {"args": [enabled, interval, branch, schedule, start, end, hr_enabled, hr_interval,
                                   hr_start]}}


def param_entry(infotext: str, key: str = "DeepCache") -> str | None:
    """The value of one 'Key: value' entry in the parameters line of an infotext (quotes removed)."""
    line = infotext.strip().splitlines()[-1] if infotext.strip() else ""
    m = re.search(r'(?:^|, )' + re.escape(key) + r': ("(?:[^"\\]|\\.)*"|[^,]*)', line)
    if not m:
        return None
    v = m.group(1)
    return json.loads(v) if v.startswith('"') else v


class A1111Server:
    """launch.py on a free port, API only (mode "api": --nowebui) or with the gradio UI (mode "ui")."""

    def __init__(self, mode: str, controlnet_dir: str | None = None):
        assert mode in ("api", "ui")
        self.mode = mode
        self.tmp = Path(tempfile.mkdtemp(prefix=f"deepcache-a1111-{mode}-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.tmp / "server.log"
        self.proc = None
        self.controlnet_dir = controlnet_dir
        self.cache: dict = {}
        self.lock = threading.Lock()

    def args(self) -> list[str]:
        a = [a1111_python(), "launch.py", "--skip-prepare-environment", "--skip-torch-cuda-test",
             "--use-cpu", "all", "--no-half", "--no-half-vae", "--precision", "full", "--skip-version-check",
             "--do-not-download-clip", "--disable-safe-unpickle", "--server-name", "127.0.0.1", "--api",
             "--port", str(self.port), "--ui-settings-file", str(self.tmp / "config.json"),
             "--ui-config-file", str(self.tmp / "ui-config.json"), "--no-prompt-history"]
        if self.mode == "api":
            a.append("--nowebui")
        ckpt = os.environ.get("A1111_CKPT") or webui() / "models" / "Stable-diffusion" / "random_sd15.safetensors"
        if Path(ckpt).exists():
            a += ["--ckpt", str(ckpt)]
        if self.controlnet_dir:
            a += ["--controlnet-dir", self.controlnet_dir]
        return a + shlex.split(os.environ.get("A1111_EXTRA_ARGS", ""))

    def start(self, timeout=600):
        # nothing of the tests is written into the webui folder: own settings, no saved images
        settings = {"samples_save": False, "grid_save": False, "save_to_dirs": False,
                    "outdir_samples": str(self.tmp / "out"), "outdir_grids": str(self.tmp / "out"),
                    "outdir_txt2img_samples": str(self.tmp / "out"), "outdir_img2img_samples": str(self.tmp / "out"),
                    "outdir_txt2img_grids": str(self.tmp / "out"), "outdir_img2img_grids": str(self.tmp / "out"),
                    "outdir_save": str(self.tmp / "out"), "outdir_init_images": str(self.tmp / "out"),
                    "save_init_img": False, "auto_launch_browser": "Disable",
                    "control_net_model_cache_size": 2}
        (self.tmp / "config.json").write_text(json.dumps(settings))
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.args(), cwd=webui(), stdout=self.log, stderr=subprocess.STDOUT,
                                     env=server_env(), start_new_session=True)
        deadline = time.time() + timeout
        probe = "/sdapi/v1/samplers"
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"A1111 exited ({self.proc.returncode}):\n{self.server_log()[-5000:]}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                urllib.request.urlopen(self.url + probe, timeout=5).read()
                if "Model loaded in" in self.server_log():  # loads in a thread after the server is up
                    break
            time.sleep(1)
        else:
            raise RuntimeError(f"A1111 ({self.mode}) did not start in {timeout} s:\n{self.server_log()[-5000:]}")
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if getattr(self, "log", None):
            self.log.close()

    # -- console --------------------------------------------------------------
    def server_log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def mark(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, mark: int) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(mark)
            return f.read().decode(errors="replace")

    # -- HTTP -----------------------------------------------------------------
    def request(self, path, body=None, timeout=900):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
        try:
            return json.loads(urllib.request.urlopen(req, timeout=timeout).read() or b"null")
        except urllib.error.HTTPError as e:
            raise HTTPError(e.code, e.read().decode(errors="replace"), self.server_log()[-6000:]) from None

    def generate(self, payload: dict, endpoint="txt2img", cache=False) -> Result:
        """POST /sdapi/v1/txt2img (or img2img); the console lines it caused come with the result.
        cache=True: reuse the result of an identical earlier request on this server."""
        key = json.dumps([endpoint, payload], sort_keys=True)
        if cache and key in self.cache:
            return self.cache[key]
        with self.lock:  # one generation at a time, so the console lines belong to it
            mark = self.mark()
            t0 = time.perf_counter()
            response = self.request(f"/sdapi/v1/{endpoint}", payload)
            seconds = time.perf_counter() - t0
            time.sleep(0.2)  # let the last console lines reach the file
            result = Result(response, self.log_since(mark), seconds)
        self.cache[key] = result
        return result

    def txt2img(self, cache=False, **overrides) -> Result:
        return self.generate(payload(**overrides), "txt2img", cache)

    def plain(self) -> Result:
        """The suite's reference image without DeepCache, once per server."""
        return self.txt2img(cache=True)


def payload(**overrides) -> dict:
    p = dict(BASE)
    p.update(overrides)
    return p


@contextlib.contextmanager
def browser_page(server: A1111Server, path="/", width=1400, height=1000):
    """A headless Chromium page on the server's gradio UI, console errors in page.errors."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.errors = []
            page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
            page.on("pageerror", lambda e: page.errors.append(f"pageerror: {e}"))
            page.goto(server.url + path, wait_until="domcontentloaded", timeout=120_000)
            page.wait_for_selector("#txt2img_prompt textarea", timeout=180_000)
            page.wait_for_timeout(1500)  # A1111's onUiLoaded scripts
            yield page
        finally:
            browser.close()
