"""The web UI servers of a suite that starts its host in two modes (API only, with the UI), one server at
a time: the A1111 and Forge suites. Their session fixture `servers` is session_servers(...);
tests/a1111/conftest.py orders their tests and stops the server after a suite's last test (close_all)."""
from __future__ import annotations

import pytest

_LIVE: list[Servers] = []  # the session's Servers, to stop after a suite's last test


class Servers:
    """The suite's current server. Asking for the other mode stops it and starts that one; a server that has
    died is started again; a mode that failed to start fails the later tests at once."""

    def __init__(self, server_class, *args):
        self.server_class, self.args = server_class, args  # server_class(mode, *args).start()
        self.current = None
        self.failed: dict = {}

    def get(self, mode):
        if mode in self.failed:
            pytest.fail(f"the {self.server_class.host} server ({mode}) did not start: {self.failed[mode]}")
        if self.current is not None and self.current.mode == mode and self.current.proc.poll() is None:
            return self.current
        self.close()
        server = self.server_class(mode, *self.args)
        try:
            self.current = server.start()
        except Exception as e:
            server.stop()  # a server that did not come up in time may still run
            self.failed[mode] = str(e)[-4000:]
            raise
        return self.current

    def close(self):
        if self.current is not None:
            self.current.stop()
            self.current = None


def session_servers(skip_reason: str | None, server_class, *args):
    """The body of a suite's session fixture `servers` (yield from it): skips when skip_reason says so."""
    if skip_reason:
        pytest.skip(skip_reason)
    servers = Servers(server_class, *args)
    _LIVE.append(servers)
    yield servers
    servers.close()
    _LIVE.remove(servers)


def close_all():
    for servers in _LIVE:
        servers.close()
