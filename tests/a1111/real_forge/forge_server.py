"""A real Stable Diffusion WebUI Forge (FORGE_PATH) with this extension, driven as users drive it:
over its HTTP API and, for the UI tests, in headless Chromium.

FORGE_PATH         the Forge webui folder (required; the suite skips without it)
FORGE_PYTHON       its Python (default: FORGE_PATH/../venv/bin/python, else this Python)
FORGE_ENV_SH       a shell file of exports to source (default: FORGE_PATH/../env.sh if present)
FORGE_CKPT         the SD1.5 checkpoint (default: FORGE_PATH/models/Stable-diffusion/random_sd15.safetensors,
                   else the first .safetensors there)
FORGE_EXTENSION    the extension folder to load (default: this checkout)
FORGE_THREADS      OMP/torch threads of the server (default 1: two busy cores collapse with more)
FORGE_EXTRA_ARGS   more launch.py arguments
FORGE_LOG_TAIL     characters of the server console attached to a failed test's report (default 4000)
CHROMIUM           the browser for the UI tests (default: chromium / chromium-browser on PATH)

Each server gets a fresh --data-dir of its own (settings, outputs, models/ with links to the
checkpoint and the ControlNet, extensions/ with only this extension): nothing is written into
FORGE_PATH, and whatever FORGE_PATH/extensions holds is not loaded.
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

FORGE_PATH = os.environ.get("FORGE_PATH")
ROOT = Path(__file__).resolve().parents[3]
CONTROLNET_MODEL = "control_random_sd15"
EXTENSION_NAME = "sd-deepcache"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]

# every generation of the suite: tiny, few steps (a 64 px SD1.5 step is 1-3 s on one busy CPU core)
BASE = dict(prompt="a red lighthouse on a cliff, oil painting", negative_prompt="", seed=1234, steps=8,
            width=64, height=64, cfg_scale=7.0, sampler_name="Euler", scheduler="Automatic",
            batch_size=1, n_iter=1, send_images=True, save_images=False)
# Forge's API leaves hr_additional_modules at None, and processing.py:1405 then raises
# "argument of type 'NoneType' is not iterable": every hires request must name it.
# hr_cfg: the API default is 1.0 (no uncond), the UI's is 7.0; use the base CFG like the UI.
HIRES = dict(enable_hr=True, hr_scale=2.0, hr_upscaler="Latent", hr_second_pass_steps=4,
             denoising_strength=0.6, hr_cfg=7.0, hr_additional_modules=["Use same choices"])
SUMMARY_RE = re.compile(r"\[DeepCache\] DeepCache: (\d+) full / (\d+) cached steps([^\n]*)")


def skip_reason() -> str | None:
    if not FORGE_PATH:
        return "FORGE_PATH is not set"
    if not (Path(FORGE_PATH) / "launch.py").exists():
        return f"FORGE_PATH={FORGE_PATH} has no launch.py"
    if not (Path(FORGE_PATH) / "backend").is_dir():
        return f"FORGE_PATH={FORGE_PATH} is not Forge (no backend/)"
    if checkpoint() is None:
        return "no checkpoint: set FORGE_CKPT or put one in FORGE_PATH/models/Stable-diffusion"
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
    return Path(FORGE_PATH).resolve()


def forge_python() -> str:
    if os.environ.get("FORGE_PYTHON"):
        return os.environ["FORGE_PYTHON"]
    venv = webui().parent / "venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def checkpoint() -> Path | None:
    if os.environ.get("FORGE_CKPT"):
        return Path(os.environ["FORGE_CKPT"]).resolve()
    d = Path(FORGE_PATH) / "models" / "Stable-diffusion"
    if (d / "random_sd15.safetensors").exists():
        return (d / "random_sd15.safetensors").resolve()
    found = sorted(d.glob("*.safetensors")) if d.is_dir() else []
    return found[0].resolve() if found else None


def extension_dir() -> Path:
    return Path(os.environ.get("FORGE_EXTENSION") or ROOT).resolve()


def builtin_controlnet_installed() -> bool:
    return (webui() / "extensions-builtin" / "sd_forge_controlnet" / "scripts" / "controlnet.py").exists()


def server_env() -> dict:
    env = dict(os.environ)
    env_sh = os.environ.get("FORGE_ENV_SH") or str(webui().parent / "env.sh")
    if Path(env_sh).exists():
        out = subprocess.run(["bash", "-c", f". {shlex.quote(env_sh)} && env -0"], capture_output=True,
                             check=True, env=env).stdout
        env = dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)
    threads = os.environ.get("FORGE_THREADS", "1")
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
    """One API generation: decoded images, the info JSON, the PNG parameters, the console output
    it caused."""

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

    @property
    def png_parameters(self) -> str | None:
        """The 'parameters' text chunk of the first PNG, as PNG Info reads it."""
        from PIL import Image
        b64 = (self.response.get("images") or [""])[0]
        return Image.open(io.BytesIO(base64.b64decode(b64.split(",", 1)[-1]))).info.get("parameters")

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
    line = infotext.strip().splitlines()[-1] if infotext and infotext.strip() else ""
    m = re.search(r'(?:^|, )' + re.escape(key) + r': ("(?:[^"\\]|\\.)*"|[^,]*)', line)
    if not m:
        return None
    v = m.group(1)
    return json.loads(v) if v.startswith('"') else v


def deepcache_settings(infotext: str, key: str = "DeepCache") -> dict | None:
    """The DeepCache entry of an infotext as {interval, branch, schedule, start, end, off}, or None
    when there is none. Reads both "interval 3, branch 0, schedule uniform, start 0.00, end 1.00"
    and the older "interval 3, branch 0, uniform, 0.00-1.00"; off is the reason of an
    "(off: reason)" note or of a bare "off (reason)" entry, else None."""
    entry = param_entry(infotext, key)
    if entry is None:
        return None
    out: dict = {"off": None}
    m = re.search(r"\(off: (.*)\)\s*$", entry) or re.match(r"^off \((.*)\)\s*$", entry)
    if m:
        out["off"] = m.group(1)
        entry = entry[:m.start()]
    for name in ("interval", "branch"):
        m = re.search(rf"\b{name} (\d+)", entry)
        if m:
            out[name] = int(m.group(1))
    m = re.search(r"\b(non-uniform|uniform)\b", entry)
    if m:
        out["schedule"] = m.group(1)
    m = re.search(r"\bstart (\d+(?:\.\d+)?)", entry)
    if m:
        out["start"] = float(m.group(1))
    m = re.search(r"\bend (\d+(?:\.\d+)?)", entry)
    if m:
        out["end"] = float(m.group(1))
    m = re.search(r"(\d\.\d+)-(\d\.\d+)", entry)
    if m:
        out["start"], out["end"] = float(m.group(1)), float(m.group(2))
    return out


def write_controlnet(path: Path) -> Path:
    """The random SD1.5 ControlNet of tests/a1111/make_controlnet.py, written with Forge's Python
    (it has torch and safetensors)."""
    script = ROOT / "tests" / "a1111" / "make_controlnet.py"
    subprocess.run([forge_python(), str(script), str(path)], check=True, capture_output=True,
                   env=dict(os.environ, OMP_NUM_THREADS="1"))
    return path


class ForgeServer:
    """launch.py on a free port, API only (mode "api": --nowebui) or with the gradio UI (mode "ui")."""

    def __init__(self, mode: str, controlnet_file: Path | None = None):
        assert mode in ("api", "ui")
        self.mode = mode
        self.tmp = Path(tempfile.mkdtemp(prefix=f"deepcache-forge-{mode}-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.tmp / "server.log"
        self.proc = None
        self.controlnet_file = controlnet_file
        self.cache: dict = {}
        self.lock = threading.Lock()

    def args(self) -> list[str]:
        a = [forge_python(), "launch.py",
             # launch.py would pip-install and git-clone at start (offline: fails); the build did it
             "--skip-prepare-environment", "--skip-install", "--skip-version-check",
             "--skip-torch-cuda-test", "--always-cpu",
             "--server-name", "127.0.0.1", "--port", str(self.port), "--api",
             "--data-dir", str(self.tmp / "data"),
             # gradio serves only the data dir by default: the webui's own js/css would be 403
             "--gradio-allowed-path", str(webui())]
        if self.mode == "api":
            a.append("--nowebui")
        return a + shlex.split(os.environ.get("FORGE_EXTRA_ARGS", ""))

    def _lay_out_data_dir(self):
        data = self.tmp / "data"
        for sub in ("extensions", "models/Stable-diffusion", "models/ControlNet", "outputs"):
            (data / sub).mkdir(parents=True, exist_ok=True)
        (data / "extensions" / EXTENSION_NAME).symlink_to(extension_dir())
        ckpt = checkpoint()
        (data / "models" / "Stable-diffusion" / ckpt.name).symlink_to(ckpt)
        if self.controlnet_file is not None:
            (data / "models" / "ControlNet" / self.controlnet_file.name).symlink_to(self.controlnet_file)
        out = str(data / "outputs")
        settings = {"samples_save": False, "grid_save": False, "save_to_dirs": False,
                    "outdir_samples": out, "outdir_grids": out, "outdir_save": out, "outdir_init_images": out,
                    "save_init_img": False, "auto_launch_browser": "Disable", "show_progress_every_n_steps": -1}
        (data / "config.json").write_text(json.dumps(settings))

    def start(self, timeout=600):
        self._lay_out_data_dir()
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.args(), cwd=webui(), stdout=self.log, stderr=subprocess.STDOUT,
                                     env=server_env(), start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Forge exited ({self.proc.returncode}):\n{self.server_log()[-5000:]}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                urllib.request.urlopen(self.url + "/sdapi/v1/samplers", timeout=5).read()
                break
            time.sleep(1)
        else:
            raise RuntimeError(f"Forge ({self.mode}) did not start in {timeout} s:\n{self.server_log()[-5000:]}")
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
        # keep the console for a look afterwards, drop the rest (outputs, links)
        shutil.rmtree(self.tmp / "data", ignore_errors=True)

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

    def generate(self, payload: dict, endpoint="txt2img", cache=True) -> Result:
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
            time.sleep(0.3)  # let the last console lines reach the file
            result = Result(response, self.log_since(mark), seconds)
        self.cache[key] = result
        return result

    def txt2img(self, scripts: dict | None = None, cache=True, **overrides) -> Result:
        return self.generate(payload(scripts, **overrides), "txt2img", cache)

    def img2img(self, scripts: dict | None = None, cache=True, **overrides) -> Result:
        return self.generate(payload(scripts, **overrides), "img2img", cache)


def payload(scripts: dict | None = None, **overrides) -> dict:
    p = dict(BASE)
    p.update(overrides)
    if scripts:
        p["alwayson_scripts"] = scripts
    return p


@contextlib.contextmanager
def browser_page(server: ForgeServer, width=1400, height=1400):
    """A headless Chromium page on the server's gradio UI; console errors in page.errors, failed
    loads in page.failed."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.errors = []
            page.failed = []
            page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
            page.on("pageerror", lambda e: page.errors.append(f"pageerror: {e}"))
            page.on("response", lambda r: r.status >= 400 and page.failed.append(f"{r.status} {r.url}"))
            page.on("requestfailed", lambda r: page.failed.append(f"failed {r.url} {r.failure}"))
            page.goto(server.url + "/", wait_until="domcontentloaded", timeout=120_000)
            page.wait_for_selector("#txt2img_prompt textarea", timeout=180_000)
            page.wait_for_timeout(1500)  # the webui's onUiLoaded scripts
            yield page
        finally:
            browser.close()
