"""A real AUTOMATIC1111 web UI (A1111_PATH) with this extension, driven over its HTTP API; what it shares
with Forge is in tests/real_hosts (sd_webui.py and below).

A1111_PATH         the webui folder (required; the suite skips without it)
A1111_PYTHON       its Python (default: A1111_PATH/../venv/bin/python, else this Python)
A1111_ENV_SH       a shell file of exports to source (default: A1111_PATH/../env.sh if present;
                   it carries HF_HOME/HF_HUB_OFFLINE for the offline tokenizer)
A1111_CKPT         checkpoint to load (default: models/Stable-diffusion/random_sd15.safetensors if present)
A1111_THREADS      OMP/torch threads of the server (default 1: two busy cores collapse with more)
A1111_EXTRA_ARGS   more launch.py arguments
A1111_LOG_TAIL     characters of the server console attached to a failed test's report (default 4000)
CHROMIUM           the browser for the UI tests (default: chromium / chromium-browser on PATH)
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from sd_webui import SdWebUIServer, webui_skip_reason

A1111_PATH = os.environ.get("A1111_PATH")
CONTROLNET_EXT = "sd-webui-controlnet"

# every generation of the suite: tiny, few steps (a 64 px SD1.5 step is ~2 s on one busy CPU core)
BASE = dict(prompt="a red lighthouse on a cliff, oil painting", negative_prompt="", seed=1234, steps=5,
            width=64, height=64, cfg_scale=7.0, sampler_name="Euler", scheduler="Automatic",
            batch_size=1, n_iter=1, send_images=True, save_images=False)


def skip_reason() -> str | None:
    return webui_skip_reason("A1111_PATH")


def webui() -> Path:
    return Path(A1111_PATH).resolve()


def controlnet_installed() -> bool:
    return (webui() / "extensions" / CONTROLNET_EXT / "scripts" / "controlnet.py").exists()


class A1111Server(SdWebUIServer):
    """A1111's launch.py on the CPU in full precision, its settings and UI config in self.tmp; the checkpoint
    of A1111_CKPT, and the ControlNet folder (controlnet) when the suite wrote one."""

    host = "A1111"
    env_prefix = "A1111"

    def host_args(self) -> list[str]:
        a = ["--skip-prepare-environment",
             "--skip-torch-cuda-test", "--use-cpu", "all", "--no-half", "--no-half-vae", "--precision", "full",
             "--skip-version-check", "--do-not-download-clip", "--disable-safe-unpickle",
             "--server-name", "127.0.0.1", "--api",
             "--port", str(self.port), "--ui-settings-file", str(self.tmp / "config.json"),
             "--ui-config-file", str(self.tmp / "ui-config.json"), "--no-prompt-history"]
        ckpt = self.var("CKPT") or self.webui / "models" / "Stable-diffusion" / "random_sd15.safetensors"
        if Path(ckpt).exists():
            a += ["--ckpt", str(ckpt)]
        if self.controlnet:
            a += ["--controlnet-dir", self.controlnet]
        return a

    def prepare(self):
        # nothing of the tests is written into the webui folder: own settings, no saved images
        out = str(self.tmp / "out")
        settings = {"samples_save": False, "grid_save": False, "save_to_dirs": False,
                    "outdir_samples": out, "outdir_grids": out,
                    "outdir_txt2img_samples": out, "outdir_img2img_samples": out,
                    "outdir_txt2img_grids": out, "outdir_img2img_grids": out,
                    "outdir_save": out, "outdir_init_images": out,
                    "save_init_img": False, "auto_launch_browser": "Disable",
                    "control_net_model_cache_size": 2}
        (self.tmp / "config.json").write_text(json.dumps(settings))

    def ready(self) -> bool:
        return "Model loaded in" in self.server_log()  # the model loads in a thread after the server is up

    def txt2img(self, cache=False, **overrides):
        return self.generate(payload(**overrides), "txt2img", cache)

    def plain(self):
        """The suite's reference image without DeepCache, once per server."""
        return self.txt2img(cache=True)


def payload(**overrides) -> dict:
    return {**BASE, **overrides}

