"""Fixtures of the real-Forge suite: one server at a time, started once per mode per session.

Tests that use `api_server` (launch.py --nowebui) all run before those that use `ui_server`
(gradio UI too), so the suite starts each mode once and never runs two servers together.
Everything skips when FORGE_PATH is unset (see forge_server.py for the variables).
"""
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forge_server import (  # noqa: E402
    CONTROLNET_MODEL,
    ForgeServer,
    builtin_controlnet_installed,
    skip_reason,
    webui,
    write_controlnet,
)

HERE = str(Path(__file__).resolve().parent)


def _mode(item) -> int:
    return 1 if "ui_server" in getattr(item, "fixturenames", ()) else 0


def pytest_collection_modifyitems(session, config, items):
    # stable: API-mode tests first, then the UI-mode ones, each group in file order
    ours = [i for i in items if str(i.path).startswith(HERE)]
    if ours:
        others = [i for i in items if not str(i.path).startswith(HERE)]
        items[:] = others + sorted(ours, key=_mode)


class Servers:
    def __init__(self, controlnet_file):
        self.current = None
        self.controlnet_file = controlnet_file
        self.failed: dict = {}

    def get(self, mode) -> ForgeServer:
        if mode in self.failed:
            pytest.fail(f"the Forge server ({mode}) did not start: {self.failed[mode]}")
        if self.current is not None and self.current.mode == mode and self.current.proc.poll() is None:
            return self.current
        self.close()
        try:
            self.current = ForgeServer(mode, self.controlnet_file).start()
        except Exception as e:
            self.failed[mode] = str(e)[-4000:]
            raise
        return self.current

    def close(self):
        if self.current is not None:
            self.current.stop()
            self.current = None


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
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    s = Servers(controlnet_file)
    _live.append(s)
    yield s
    s.close()
    _live.remove(s)


_live: list = []


def pytest_runtest_teardown(item, nextitem):
    # stop Forge as soon as the last test of this folder is done, not at the end of the session:
    # other suites of the same run (real A1111, ComfyUI) start servers of their own
    if str(item.path).startswith(HERE) and (nextitem is None or not str(nextitem.path).startswith(HERE)):
        for s in _live:
            s.close()


@pytest.fixture
def api_server(servers) -> ForgeServer:
    return servers.get("api")


@pytest.fixture
def ui_server(servers) -> ForgeServer:
    return servers.get("ui")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and str(item.path).startswith(HERE):
        funcargs = getattr(item, "funcargs", {}) or {}
        server = getattr(funcargs.get("servers"), "current", None)
        for name in ("api_server", "ui_server"):
            server = server or funcargs.get(name)
        if server is not None:
            tail = server.server_log()[-int(os.environ.get("FORGE_LOG_TAIL", "4000")):]
            report.sections.append((f"Forge server console (tail, {server.log_path})", tail))
