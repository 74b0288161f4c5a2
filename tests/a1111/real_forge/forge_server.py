"""A real Stable Diffusion WebUI Forge (FORGE_PATH) with this extension, driven as users drive it:
over its HTTP API and, for the UI tests, in headless Chromium. What it shares with A1111 is in
tests/real_hosts (sd_webui.py and below).

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

import json
import os
import shutil
import subprocess
from pathlib import Path

from sd_webui import SdWebUIServer, webui_page, webui_skip_reason
from server_process import host_python

FORGE_PATH = os.environ.get("FORGE_PATH")
ROOT = Path(__file__).resolve().parents[3]
EXTENSION_NAME = "sd-deepcache"

# every generation of the suite: tiny, few steps (a 64 px SD1.5 step is 1-3 s on one busy CPU core)
BASE = dict(prompt="a red lighthouse on a cliff, oil painting", negative_prompt="", seed=1234, steps=8,
            width=64, height=64, cfg_scale=7.0, sampler_name="Euler", scheduler="Automatic",
            batch_size=1, n_iter=1, send_images=True, save_images=False)
# Forge's API leaves hr_additional_modules at None, and processing.py:1405 then raises
# "argument of type 'NoneType' is not iterable": every hires request must name it.
# hr_cfg: the API default is 1.0 (no uncond), the UI's is 7.0; use the base CFG like the UI.
HIRES = dict(enable_hr=True, hr_scale=2.0, hr_upscaler="Latent", hr_second_pass_steps=4,
             denoising_strength=0.6, hr_cfg=7.0, hr_additional_modules=["Use same choices"])


def skip_reason() -> str | None:
    reason = webui_skip_reason("FORGE_PATH")
    if reason:
        return reason
    if not (Path(FORGE_PATH) / "backend").is_dir():
        return f"FORGE_PATH={FORGE_PATH} is not Forge (no backend/)"
    if checkpoint() is None:
        return "no checkpoint: set FORGE_CKPT or put one in FORGE_PATH/models/Stable-diffusion"
    return None


def webui() -> Path:
    return Path(FORGE_PATH).resolve()


def forge_python() -> str:
    return host_python(os.environ.get("FORGE_PYTHON"), webui())


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


def write_controlnet(path: Path) -> Path:
    """The random SD1.5 ControlNet of tests/a1111/make_controlnet.py, written with Forge's Python
    (it has torch and safetensors)."""
    script = ROOT / "tests" / "a1111" / "make_controlnet.py"
    subprocess.run([forge_python(), str(script), str(path)], check=True, capture_output=True,
                   env=dict(os.environ, OMP_NUM_THREADS="1"))
    return path


class ForgeServer(SdWebUIServer):
    """Forge's launch.py (--always-cpu) with a --data-dir of its own in self.tmp (see prepare), removed at
    the stop; server.log stays."""

    host = "Forge"
    env_prefix = "FORGE"

    def host_args(self) -> list[str]:
        # launch.py would pip-install and git-clone at start (offline: fails); the build did it
        return ["--skip-prepare-environment", "--skip-install", "--skip-version-check",
                "--skip-torch-cuda-test", "--always-cpu",
                "--server-name", "127.0.0.1", "--port", str(self.port), "--api",
                "--data-dir", str(self.tmp / "data"),
                # gradio serves only the data dir by default: the webui's own js/css would be 403
                "--gradio-allowed-path", str(self.webui)]

    def prepare(self):
        """The data dir: links to this extension, the checkpoint and the ControlNet; settings without saving."""
        data = self.tmp / "data"
        for sub in ("extensions", "models/Stable-diffusion", "models/ControlNet", "outputs"):
            (data / sub).mkdir(parents=True, exist_ok=True)
        (data / "extensions" / EXTENSION_NAME).symlink_to(extension_dir())
        ckpt = checkpoint()
        (data / "models" / "Stable-diffusion" / ckpt.name).symlink_to(ckpt)
        if self.controlnet is not None:
            (data / "models" / "ControlNet" / self.controlnet.name).symlink_to(self.controlnet)
        out = str(data / "outputs")
        settings = {"samples_save": False, "grid_save": False, "save_to_dirs": False,
                    "outdir_samples": out, "outdir_grids": out, "outdir_save": out, "outdir_init_images": out,
                    "save_init_img": False, "auto_launch_browser": "Disable", "show_progress_every_n_steps": -1}
        (data / "config.json").write_text(json.dumps(settings))

    def stop(self):
        super().stop()
        # keep the console for a look afterwards, drop the rest (outputs, links)
        shutil.rmtree(self.tmp / "data", ignore_errors=True)

    def txt2img(self, scripts: dict | None = None, cache=True, **overrides):
        return self.generate(payload(scripts, **overrides), "txt2img", cache)

    def img2img(self, scripts: dict | None = None, cache=True, **overrides):
        return self.generate(payload(scripts, **overrides), "img2img", cache)


def payload(scripts: dict | None = None, **overrides) -> dict:
    p = dict(BASE)
    p.update(overrides)
    if scripts:
        p["alwayson_scripts"] = scripts
    return p


def browser_page(server: ForgeServer):
    """The server's gradio UI in headless Chromium, 1400x1400; console errors in page.errors, failed
    loads in page.failed."""
    return webui_page(server, width=1400, height=1400)
