"""What the tests in this folder share.

The CPU tests here (test_*.py) run the extension against the web UI stand-ins of stubs/: stubs/ goes
first on sys.path, and the fixture `fresh_host_state` gives a test a clean stand-in state.

The real-host suites (real_a1111/, real_forge/) each define a session fixture `servers`: their web UI,
one server at a time (tests/real_hosts/one_server_at_a_time.py). For them this file
- provides `api_server` (launch.py --nowebui) and `ui_server` (with the gradio UI);
- runs each suite's tests together, after all others, those with the API-mode server first, so that each
  mode starts once per session and two servers never run together;
- stops the server right after a suite's last test, not at the end of the session (other suites start
  servers of their own; two at once are too much for a small machine);
- adds the end of the server's console to a failed test's report.
"""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "stubs"))
from one_server_at_a_time import close_all  # noqa: E402  (tests/real_hosts: on sys.path from ../conftest.py)


@pytest.fixture
def fresh_host_state():
    """A clean stand-in web UI state for the test."""
    import a1111_harness
    a1111_harness.reset_host_state()


# -- the real-host suites ----------------------------------------------------------------------------
def _suite(item):
    """The folder of a test that uses a real-host suite's server, else None."""
    if item is None or "servers" not in getattr(item, "fixturenames", ()):
        return None
    return Path(str(item.path)).resolve().parent


def _mode(item) -> int:
    return 1 if "ui_server" in item.fixturenames else 0


def pytest_collection_modifyitems(session, config, items):
    # stable: the other tests, then each suite's tests (in the order the suites come), API mode first
    suites = list(dict.fromkeys(s for s in map(_suite, items) if s is not None))
    ours = [i for i in items if _suite(i) is not None]
    if ours:
        items[:] = ([i for i in items if _suite(i) is None]
                    + sorted(ours, key=lambda i: (suites.index(_suite(i)), _mode(i))))


def pytest_runtest_teardown(item, nextitem):
    if _suite(item) is not None and _suite(nextitem) != _suite(item):
        close_all()


@pytest.fixture
def api_server(servers):
    return servers.get("api")


@pytest.fixture
def ui_server(servers):
    return servers.get("ui")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        funcargs = getattr(item, "funcargs", None) or {}
        server = getattr(funcargs.get("servers"), "current", None)
        if server is not None:
            report.sections.append((f"{server.name} server console (tail, {server.log_path})",
                                    server.log_tail(server.report_tail)))
