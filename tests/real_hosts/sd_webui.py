"""What the A1111 and Forge suites share. Both web UIs start with launch.py, serve A1111's /sdapi/v1 API,
take the DeepCache script's values in alwayson_scripts, write its settings into the image's parameters
(the infotext), print its summary line on the console, and show the same gradio page. Each host's own
module (real_a1111/a1111_server.py, real_forge/forge_server.py) holds its launch arguments, folders and
environment variables."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import threading
import time
from pathlib import Path

from headless_chromium import open_page
from pixels import decode_image, png_text
from server_process import ServerProcess, host_python

CONTROLNET_MODEL = "control_random_sd15"  # the random SD1.5 ControlNet of tests/a1111/make_controlnet.py
SUMMARY_RE = re.compile(r"\[DeepCache\] DeepCache: (\d+) full / (\d+) cached steps([^\n]*)")


def webui_skip_reason(variable: str) -> str | None:
    """Why a suite cannot run the web UI whose folder the environment variable names, or None."""
    path = os.environ.get(variable)
    if not path:
        return f"{variable} is not set"
    if not (Path(path) / "launch.py").exists():
        return f"{variable}={path} has no launch.py"
    return None


def webui_env(env_sh: str | Path | None, threads: str) -> dict:
    """The server's environment: this one, after env_sh (a shell file of exports) if it exists; `threads`
    OpenMP/MKL threads, unbuffered output, no analytics, no proxy for 127.0.0.1, and the Hugging Face hub
    offline unless env_sh says otherwise."""
    env = dict(os.environ)
    if env_sh and Path(env_sh).exists():
        out = subprocess.run(["bash", "-c", f". {shlex.quote(str(env_sh))} && env -0"], capture_output=True,
                             check=True, env=env).stdout
        env = dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)
    env.update({"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1",
                "GRADIO_ANALYTICS_ENABLED": "False", "DO_NOT_TRACK": "1",
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    return env


class Result:
    """One API generation: decoded images, the info JSON, the PNG parameters, the console output it caused."""

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
        return png_text((self.response.get("images") or [""])[0], "parameters")

    def summaries(self) -> list[tuple[int, int, str]]:
        """(full, cached, rest of line) of each '[DeepCache] DeepCache: F full / C cached steps' line."""
        return [(int(f), int(c), rest) for f, c, rest in SUMMARY_RE.findall(self.log)]


class SdWebUIServer(ServerProcess):
    """launch.py on a free port, API only (mode "api": --nowebui) or with the gradio UI (mode "ui").
    A subclass gives its host's name, the prefix of its environment variables (env_prefix: <prefix>_PATH,
    _PYTHON, _ENV_SH, _THREADS, _EXTRA_ARGS, _LOG_TAIL), its own launch.py arguments (host_args) and what it
    writes before the start (prepare). `controlnet` is what the suite hands its servers for the ControlNet
    (a folder or a file, the host's say), or None."""

    host = "web UI"
    env_prefix = ""

    def __init__(self, mode: str, controlnet=None):
        assert mode in ("api", "ui")
        super().__init__(f"deepcache-{self.host.lower()}-{mode}-")
        self.mode = mode
        self.name = f"{self.host} ({mode})"
        self.webui = Path(self.var("PATH")).resolve()
        self.controlnet = controlnet
        self.cache: dict = {}
        self.lock = threading.Lock()

    def var(self, name: str, default=None):
        """The host's environment variable <env_prefix>_<name>."""
        return os.environ.get(f"{self.env_prefix}_{name}", default)

    @property
    def report_tail(self) -> int:
        """Characters of the console a failed test's report gets (<prefix>_LOG_TAIL, default 4000)."""
        return int(self.var("LOG_TAIL", "4000"))

    def args(self) -> list[str]:
        """The host's Python, launch.py, host_args(), --nowebui in API mode, then <prefix>_EXTRA_ARGS."""
        return ([host_python(self.var("PYTHON"), self.webui), "launch.py", *self.host_args()]
                + (["--nowebui"] if self.mode == "api" else []) + shlex.split(self.var("EXTRA_ARGS", "")))

    def host_args(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict:
        return webui_env(self.var("ENV_SH") or self.webui.parent / "env.sh", self.var("THREADS", "1"))

    def prepare(self):
        pass

    def start(self, timeout=600):
        self.prepare()
        self.launch(self.args(), cwd=self.webui, env=self.env(), new_session=True)
        self.wait_until_ready("/sdapi/v1/samplers", timeout)
        return self

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
            time.sleep(0.3)  # let the last console lines reach the file
            result = Result(response, self.log_since(mark), seconds)
        self.cache[key] = result
        return result


@contextlib.contextmanager
def webui_page(server: SdWebUIServer, path="/", width=1400, height=1000):
    """The server's gradio UI in headless Chromium (headless_chromium.open_page), once its prompt box is there."""
    with open_page(server.url + path, width, height) as page:
        page.wait_for_selector("#txt2img_prompt textarea", timeout=180_000)
        page.wait_for_timeout(1500)  # the web UI's onUiLoaded scripts
        yield page


# -- the DeepCache script and ControlNet over the API, the image's parameters -----------------------
def deepcache_args(enabled=True, interval=3, branch=0, schedule="uniform", start=0.0, end=1.0,
                   hr_enabled=False, hr_interval=3, hr_start=0.0) -> dict:
    """alwayson_scripts entry of the DeepCache script (its ui() values, in order)."""
    return {"DeepCache": {"args": [enabled, interval, branch, schedule, start, end, hr_enabled, hr_interval,
                                   hr_start]}}


def controlnet_model(server: SdWebUIServer, name=CONTROLNET_MODEL) -> str:
    """The ControlNet's title in /controlnet/model_list (with its hash); fails the test when it is not listed."""
    models = server.request("/controlnet/model_list").get("model_list", [])
    found = [m for m in models if name in m]
    assert found, f"{name} is not in /controlnet/model_list: {models}"
    return found[0]


def controlnet_unit(module: str, model: str, image: str, **overrides) -> dict:
    """alwayson_scripts entry of ControlNet with one unit: preprocessor `module`, the control image (base64),
    weight 1 over all steps, unless overrides say otherwise."""
    unit = dict(enabled=True, module=module, model=model, image=image, weight=1.0, resize_mode="Crop and Resize",
                processor_res=64, guidance_start=0.0, guidance_end=1.0, control_mode="Balanced",
                pixel_perfect=False, save_detected_map=False)
    unit.update(overrides)
    return {"ControlNet": {"args": [unit]}}


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
