"""SDK security options that need no server: which URLs take TLS options, certificate
pairs, how a refused token is reported, and that --help never shows a token."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from latentserve.clients import ClientTLS, GrpcClient, RestClient, UnauthenticatedError, connect
from latentserve.clients.errors import from_http


def test_tls_urls_make_tls_clients_and_plain_urls_refuse_tls_options() -> None:
    with connect("https://127.0.0.1:8443", token="t") as rest:
        assert isinstance(rest, RestClient) and rest.base_url.startswith("https://")
    with connect("grpcs://127.0.0.1:50052", token="t") as grpc_client:
        assert isinstance(grpc_client, GrpcClient) and grpc_client.target == "127.0.0.1:50052"
    for url in ("http://127.0.0.1:8000", "grpc://127.0.0.1:50051"):
        with pytest.raises(ValueError, match="TLS options need an https:// or grpcs:// URL"):
            connect(url, ca_file="ca.pem")
    with pytest.raises(ValueError, match="TLS options need an https:// URL"):
        RestClient("http://127.0.0.1:8000", tls=ClientTLS())
    with pytest.raises(ValueError, match="expected grpcs://host:port"):
        connect("grpcs://127.0.0.1:1/path")


def test_a_client_certificate_needs_its_key() -> None:
    with pytest.raises(ValueError, match="give both or neither"):
        ClientTLS("ca.pem", cert_file="client.pem")
    with pytest.raises(ValueError, match="give both or neither"):
        connect("grpcs://127.0.0.1:50052", client_key="client-key.pem")


def test_a_401_is_unauthenticated_with_or_without_the_servers_body() -> None:
    body = {"error": {"code": "unauthenticated", "message": "the bearer token is not valid"}}
    error = from_http(401, body)
    assert type(error) is UnauthenticatedError and error.code == "unauthenticated"
    assert type(from_http(401, "<html>proxy says no</html>")) is UnauthenticatedError


def test_help_never_shows_the_token_from_the_environment() -> None:
    env = os.environ | {"LATENTSERVE_TOKEN": "s3cr3t-value"}
    for command in ("models", "sample", "eval-samples"):
        shown = subprocess.run(
            [sys.executable, "-m", "latentserve.cli", command, "--help"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert shown.returncode == 0 and "--token" in shown.stdout
        assert "s3cr3t-value" not in shown.stdout
