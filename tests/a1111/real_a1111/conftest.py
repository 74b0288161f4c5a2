"""Fixtures of the real-A1111 suite: its servers and the ControlNet they load. Everything skips when
A1111_PATH is unset (see a1111_server.py for the variables). ../conftest.py provides `api_server` and
`ui_server`, runs the API-mode tests first and stops the server after the suite's last test.
"""
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from a1111_server import A1111Server, controlnet_installed, skip_reason, webui  # noqa: E402
from one_server_at_a_time import session_servers  # noqa: E402
from sd_webui import CONTROLNET_MODEL  # noqa: E402


@pytest.fixture(scope="session")
def controlnet_model_dir(tmp_path_factory):
    """Where the random ControlNet is: models/ControlNet if it is there already, else a fresh
    one written for this session (passed to the server with --controlnet-dir)."""
    if skip_reason() or not controlnet_installed():
        return None
    if (webui() / "models" / "ControlNet" / f"{CONTROLNET_MODEL}.safetensors").exists():
        return None
    sys.path.insert(0, str(HERE.parent))
    from make_controlnet import write_controlnet
    d = tmp_path_factory.mktemp("controlnet")
    write_controlnet(d / f"{CONTROLNET_MODEL}.safetensors")
    return str(d)


@pytest.fixture(scope="session")
def servers(controlnet_model_dir):
    """The suite's A1111, one server at a time."""
    yield from session_servers(skip_reason(), A1111Server, controlnet_model_dir)
