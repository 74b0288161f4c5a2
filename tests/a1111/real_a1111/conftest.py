"""Fixtures of the real-A1111 suite: one server at a time, started once per mode per session.

Tests that use `api_server` (launch.py --nowebui) all run before those that use `ui_server`
(gradio UI too), so the suite starts each mode once and never runs two servers together.
Everything skips when A1111_PATH is unset (see a1111_server.py for the variables).
"""
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from a1111_server import CONTROLNET_MODEL, A1111Server, controlnet_installed, skip_reason, webui  # noqa: E402

HERE = Path(__file__).resolve().parent
_SERVERS: list = []  # the session's Servers, to stop after our last test


def _ours(item) -> bool:
    return item is not None and Path(str(item.path)).resolve().is_relative_to(HERE)


def _mode(item) -> int:
    return 1 if "ui_server" in getattr(item, "fixturenames", ()) else 0


def pytest_collection_modifyitems(session, config, items):
    # stable: API-mode tests first, then the UI-mode ones, each group in file order
    ours = [i for i in items if _ours(i)]
    if ours:
        items[:] = [i for i in items if not _ours(i)] + sorted(ours, key=_mode)


def pytest_runtest_teardown(item, nextitem):
    # stop the web UI right after our last test, not at the end of the session (other suites may
    # start servers of their own; two at once are too much for a small machine)
    if _ours(item) and not _ours(nextitem):
        for s in _SERVERS:
            s.close()


class Servers:
    def __init__(self, controlnet_dir):
        self.current = None
        self.controlnet_dir = controlnet_dir
        self.failed: dict = {}

    def get(self, mode) -> A1111Server:
        if mode in self.failed:
            pytest.fail(f"the A1111 server ({mode}) did not start: {self.failed[mode]}")
        if self.current is not None and self.current.mode == mode:
            if self.current.proc.poll() is None:
                return self.current
        self.close()
        try:
            self.current = A1111Server(mode, self.controlnet_dir).start()
        except Exception as e:
            self.failed[mode] = str(e)[-4000:]
            raise
        return self.current

    def close(self):
        if self.current is not None:
            self.current.stop()
            self.current = None


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
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    s = Servers(controlnet_model_dir)
    _SERVERS.append(s)
    yield s
    s.close()
    _SERVERS.remove(s)


@pytest.fixture
def api_server(servers) -> A1111Server:
    return servers.get("api")


@pytest.fixture
def ui_server(servers) -> A1111Server:
    return servers.get("ui")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        servers = item.funcargs.get("servers") if hasattr(item, "funcargs") else None
        server = getattr(servers, "current", None)
        if server is None:
            for name in ("api_server", "ui_server"):
                server = item.funcargs.get(name) if hasattr(item, "funcargs") else None
                if server is not None:
                    break
        if server is not None:
            tail = server.server_log()[-int(os.environ.get("A1111_LOG_TAIL", "4000")):]
            report.sections.append(("A1111 server console (tail)", tail))
