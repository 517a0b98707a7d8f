"""Run a private ``latentserve serve`` process on free loopback ports.

Notebooks, benchmarks and tests need a real server without picking ports by hand or
importing server code into their own process (the SDK never imports the server): this
starts the real CLI as a child process listening on port 0 (the system picks free ports,
so two servers can never race for one), reads the ports it reports in its port file,
waits for ``/readyz`` and stops it on exit.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalServer:
    """``with LocalServer(repo) as server: connect(server.grpc_url)``.

    The server's output goes to ``log_path`` (a temporary file by default) and its tail is
    quoted if the server fails to become ready.
    """

    def __init__(
        self,
        repository: Path,
        extra_args: list[str] | None = None,
        *,
        ready_timeout: float = 120.0,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
        ca_file: Path | None = None,
        launcher: Sequence[str] = (sys.executable, "-m", "latentserve.cli"),
    ) -> None:
        """``ca_file``: the server speaks TLS (``extra_args`` give it ``--tls-cert`` and
        ``--tls-key``) with a certificate this CA signed; the URLs are https:// and grpcs://.
        ``launcher``: the program given ``serve`` and its flags (default the latentserve CLI;
        the benchmark passes a wrapper that serves with a device cost model)."""
        self.repository = Path(repository)
        self.extra_args = list(extra_args or [])
        self.ready_timeout = ready_timeout
        self.http_port: int | None = None  # known once the server listens
        self.grpc_port: int | None = None
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="latentserve-", suffix=".log")[1])
        self.env = env
        self.ca_file = ca_file
        self.launcher = list(launcher)
        self._process: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        scheme = "https" if self.ca_file else "http"
        return f"{scheme}://127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs (profilers attach to it)."""
        return None if self._process is None else self._process.pid

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def grpc_url(self) -> str:
        return f"{'grpcs' if self.ca_file else 'grpc'}://{self.grpc_target}"

    def start(self) -> LocalServer:
        port_file = self.log_path.with_name(self.log_path.name + ".ports")
        port_file.unlink(missing_ok=True)
        command = [
            *self.launcher, "serve",
            "--repository", str(self.repository), "--host", "127.0.0.1",
            "--http-port", "0", "--grpc-port", "0", "--port-file", str(port_file),
            *self.extra_args,
        ]  # fmt: skip
        env = {**os.environ, **(self.env or {})}
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + self.ready_timeout
            self._read_ports(port_file, deadline)
            self._wait_ready(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 15.0) -> int | None:
        """Ask the server to drain and exit (SIGTERM); kill it if it does not."""
        process, self._process = self._process, None
        if process is None:
            return None
        process.terminate()
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def _exited(self) -> RuntimeError | None:
        assert self._process is not None
        if self._process.poll() is None:
            return None
        return RuntimeError(
            f"latentserve serve exited with code {self._process.returncode}:\n" + self.log_tail()
        )

    def _read_ports(self, port_file: Path, deadline: float) -> None:
        """The ports the server reports once both transports listen."""
        while not port_file.exists():
            if (exited := self._exited()) is not None:
                raise exited
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"server not listening after {self.ready_timeout:.0f} s:\n" + self.log_tail()
                )
            time.sleep(0.05)
        ports = json.loads(port_file.read_text())
        self.http_port, self.grpc_port = int(ports["http"]), int(ports["grpc"])

    def _wait_ready(self, deadline: float) -> None:
        context = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None
        while time.monotonic() < deadline:
            if (exited := self._exited()) is not None:
                raise exited
            try:
                url = f"{self.http_url}/readyz"
                with urllib.request.urlopen(url, timeout=2, context=context) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(
            f"server not ready after {self.ready_timeout:.0f} s:\n" + self.log_tail()
        )

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
