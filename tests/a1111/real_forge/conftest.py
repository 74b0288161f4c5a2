"""Fixtures of the real-Forge suite: its servers and the ControlNet they load. Everything skips when
FORGE_PATH is unset (see forge_server.py for the variables). ../conftest.py provides `api_server` and
`ui_server`, runs the API-mode tests first and stops the server after the suite's last test.
"""
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forge_server import ForgeServer, builtin_controlnet_installed, skip_reason, webui, write_controlnet  # noqa: E402
from one_server_at_a_time import session_servers  # noqa: E402
from sd_webui import CONTROLNET_MODEL  # noqa: E402


@pytest.fixture(scope="session")
def controlnet_file():
    """The random SD1.5 ControlNet: FORGE_PATH/models/ControlNet/control_random_sd15.safetensors if it
    is there, else one written for this session (and removed after it)."""
    if skip_reason() or not builtin_controlnet_installed():
        yield None
        return
    existing = webui() / "models" / "ControlNet" / f"{CONTROLNET_MODEL}.safetensors"
    if existing.exists():
        yield existing.resolve()
        return
    d = Path(tempfile.mkdtemp(prefix="deepcache-forge-cn-"))
    try:
        yield write_controlnet(d / f"{CONTROLNET_MODEL}.safetensors")
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def servers(controlnet_file):
    """The suite's Forge, one server at a time."""
    yield from session_servers(skip_reason(), ForgeServer, controlnet_file)
