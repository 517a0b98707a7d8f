"""``latentserve healthcheck`` (the image's HEALTHCHECK) follows the server's settings:
the same LATENTSERVE_* variables give it the port and switch it to https with TLS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.certificates import CertificateAuthority
from helpers.server_process import ServerProcess


def healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LATENTSERVE_")}
    return subprocess.run(
        [sys.executable, "-m", "latentserve.cli", "healthcheck", "--timeout", "10"],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_healthcheck_speaks_https_when_the_server_has_tls(
    tiny_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ca = CertificateAuthority(tmp_path_factory.mktemp("pki"))
    issued = ca.issue("server")
    tls_env = {"LATENTSERVE_TLS_CERT": str(issued.cert), "LATENTSERVE_TLS_KEY": str(issued.key)}
    server = ServerProcess(
        tiny_repository, tmp_path_factory.mktemp("tls"), env=tls_env, ca_file=ca.cert
    )
    port_env = {"LATENTSERVE_HTTP_PORT": str(server.http_port)}
    try:
        healthy = healthcheck({**tls_env, **port_env})
        assert healthy.returncode == 0, healthy.stderr
        # Without the TLS settings it asks over plain http, which a TLS port refuses.
        plain = healthcheck(port_env)
        assert plain.returncode == 1
        assert f"http://127.0.0.1:{server.http_port}/healthz" in plain.stderr
    finally:
        assert server.stop() == 0, server.log()
    stopped = healthcheck({**tls_env, **port_env})
    assert stopped.returncode == 1
    assert f"https://127.0.0.1:{server.http_port}/healthz" in stopped.stderr
