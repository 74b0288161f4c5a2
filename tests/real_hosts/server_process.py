"""A web UI server the way the real-host suites run one: a child process listening on a free port of
127.0.0.1, its console in a log file (what the tests read, and what a failed test's report shows), a
wait until it answers, a stop, and JSON over HTTP. Each host's own module says how to start it."""
from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_python(override: str | None, webui: Path) -> str:
    """The web UI's Python: override (the host's *_PYTHON variable) when set, else the venv next to the
    web UI's folder, else this Python."""
    if override:
        return override
    venv = webui.parent / "venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


class HTTPError(AssertionError):
    """An HTTP error from the server, with the end of its console."""

    def __init__(self, status, body, log_tail):
        super().__init__(f"HTTP {status}: {body[:2000]}\n--- server log (tail) ---\n{log_tail}")
        self.status = status


class ServerProcess:
    """One web UI process: a temporary folder of its own (self.tmp), a free port (self.url), its stdout and
    stderr in self.tmp/server.log."""

    name = "the web UI"  # in messages

    def __init__(self, tmp_prefix: str):
        self.tmp = Path(tempfile.mkdtemp(prefix=tmp_prefix))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.tmp / "server.log"
        self.proc = None
        self.log = None

    # -- process --------------------------------------------------------------
    def launch(self, args: list[str], cwd, env: dict | None = None, new_session=False):
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=new_session)

    def wait_until_ready(self, probe: str, timeout: float, probe_timeout: float = 5):
        """Until GET probe answers and ready() holds; RuntimeError with the end of the console when the
        process exits first or timeout seconds pass."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.log_tail(5000)}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                urllib.request.urlopen(self.url + probe, timeout=probe_timeout).read()
                if self.ready():
                    return
            time.sleep(1)
        raise RuntimeError(f"{self.name} did not start in {timeout} s:\n{self.log_tail(5000)}")

    def ready(self) -> bool:
        """What the host needs beyond answering the probe (a subclass's say)."""
        return True

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.log is not None:
            self.log.close()

    # -- console --------------------------------------------------------------
    def server_log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, chars: int) -> str:
        return self.server_log()[-chars:]

    def mark(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, mark: int) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(mark)
            return f.read().decode(errors="replace")

    # -- HTTP -----------------------------------------------------------------
    def request(self, path, body=None, timeout=900):
        """GET path (POST body as JSON when there is one); the answer's JSON (None when empty)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
        try:
            return json.loads(urllib.request.urlopen(req, timeout=timeout).read() or b"null")
        except urllib.error.HTTPError as e:
            raise HTTPError(e.code, e.read().decode(errors="replace"), self.log_tail(6000)) from None
