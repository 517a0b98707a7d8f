"""Bearer tokens, TLS, CORS and the offline /docs page against real server processes.

Three servers: ``open_tls`` (TLS from LATENTSERVE_TLS_* env, no tokens), ``guarded``
(tokens from --auth-tokens-file, CORS for one origin, the default exempt paths) and
``locked`` (TLS with client certificates from flags, tokens from the environment, and a
shorter exempt list). Certificates come from a CA made in the test.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import subprocess
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from helpers.certificates import CertificateAuthority, Issued
from helpers.server_process import SERVER_TOML, ServerFactory, ServerProcess, metric
from latentserve.clients import (
    ClientTLS,
    GrpcClient,
    RestClient,
    UnauthenticatedError,
    UnavailableError,
    connect,
)
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow

TOKENS = "# clients allowed in\n\nfirst-token\n  second-token  \n"
TOKEN, OTHER_TOKEN, WRONG_TOKEN = "first-token", "second-token", "not-a-token"
ORIGIN = "https://app.example"
REFUSED = "latentserve_auth_refused_total"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def grpc_auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@dataclass(frozen=True)
class Pki:
    ca: CertificateAuthority
    server: Issued
    client: Issued
    stranger: Issued  # a client certificate from another CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ca = CertificateAuthority(tmp_path_factory.mktemp("pki"))
    other = CertificateAuthority(tmp_path_factory.mktemp("other_pki"), "other CA")
    return Pki(
        ca, ca.issue("server"), ca.issue("client", client=True), other.issue("x", client=True)
    )


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "tokens.txt"
    path.write_text(TOKENS)
    return path


@pytest.fixture(scope="module")
def guarded(tiny_repository: Path, start_server: ServerFactory, tokens_file: Path) -> ServerProcess:
    config = f'cors_allow_origins = ["{ORIGIN}"]\n' + SERVER_TOML
    with start_server(
        tiny_repository, "guarded", config, extra_args=["--auth-tokens-file", str(tokens_file)]
    ) as process:
        yield process


@pytest.fixture(scope="module")
def locked(
    tiny_repository: Path, start_server: ServerFactory, tokens_file: Path, pki: Pki
) -> ServerProcess:
    tls_flags = [
        "--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key),
        "--tls-client-ca", str(pki.ca.cert),
    ]  # fmt: skip
    env = {
        "LATENTSERVE_AUTH_TOKENS_FILE": str(tokens_file),
        "LATENTSERVE_AUTH_EXEMPT_PATHS": '["/healthz", "/readyz"]',
    }
    with start_server(
        tiny_repository, "locked", extra_args=tls_flags, env=env, ca_file=pki.ca.cert
    ) as process:
        yield process


@pytest.fixture(scope="module")
def open_tls(tiny_repository: Path, start_server: ServerFactory, pki: Pki) -> ServerProcess:
    env = {"LATENTSERVE_TLS_CERT": str(pki.server.cert), "LATENTSERVE_TLS_KEY": str(pki.server.key)}
    with start_server(tiny_repository, "open_tls", env=env, ca_file=pki.ca.cert) as process:
        yield process


@pytest.fixture(scope="module")
def http(guarded: ServerProcess) -> httpx.Client:
    with httpx.Client(base_url=guarded.http_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def stub(guarded: ServerProcess) -> pb_grpc.GenerativeServiceStub:
    with grpc.insecure_channel(guarded.grpc_target) as channel:
        yield pb_grpc.GenerativeServiceStub(channel)


def refused_over(http: httpx.Client, protocol: str, reason: str) -> float:
    return metric(http, REFUSED, protocol=protocol, reason=reason)


def assert_refused(response: httpx.Response, challenge_error: str | None) -> None:
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert (
        (f'error="{challenge_error}"' in challenge)
        if challenge_error
        else "error=" not in challenge
    )
    assert response.json()["error"]["code"] == "unauthenticated"


# --- bearer tokens over REST ------------------------------------------------------------


def test_rest_refuses_a_missing_or_wrong_token_and_counts_it(http: httpx.Client) -> None:
    missing, invalid = refused_over(http, "rest", "missing"), refused_over(http, "rest", "invalid")
    assert_refused(http.get("/v1/models"), None)
    assert_refused(http.post("/v1/models/vae-tiny/sample", json={"n": 1}), None)
    assert_refused(http.get("/v1/models", headers={"Authorization": "Basic Zmlyc3Q="}), None)
    assert_refused(http.get("/v1/models", headers=bearer(WRONG_TOKEN)), "invalid_token")
    assert_refused(http.get("/v1/models", headers=bearer(TOKEN[:-1])), "invalid_token")
    assert refused_over(http, "rest", "missing") == missing + 3
    assert refused_over(http, "rest", "invalid") == invalid + 2


def test_rest_serves_each_token_of_the_file(http: httpx.Client) -> None:
    for token in (TOKEN, OTHER_TOKEN):
        models = http.get("/v1/models", headers=bearer(token))
        assert models.status_code == 200 and models.json()["models"]
        sample = http.post("/v1/models/vae-tiny/sample", json={"n": 2}, headers=bearer(token))
        assert sample.status_code == 200 and len(sample.json()["images"]) == 2


def test_probes_metrics_and_docs_need_no_token_by_default(http: httpx.Client) -> None:
    probes = ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready")
    for path in (*probes, "/metrics", "/docs", "/openapi.json"):
        assert http.get(path).status_code == 200, path
    assert http.get("/docs/static/swagger-ui.css").status_code == 200
    assert http.get("/healthzz").status_code == 401  # an exempt path's neighbour is not
    assert http.get("/v2/health/stats").status_code == 401  # nor is one under /v2/health
    assert http.get("/v2").status_code == 401  # the Open Inference Protocol's other routes


def test_openapi_marks_the_protected_operations(http: httpx.Client) -> None:
    schema = http.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    sample = schema["paths"]["/v1/models/{model}/sample"]["post"]
    assert sample["security"] == [{"bearerAuth": []}]
    assert "security" not in schema["paths"]["/healthz"]["get"]


# --- bearer tokens over gRPC ------------------------------------------------------------


def test_grpc_refuses_a_missing_or_wrong_token_on_unary_and_streaming_calls(
    stub: pb_grpc.GenerativeServiceStub, http: httpx.Client
) -> None:
    missing, invalid = refused_over(http, "grpc", "missing"), refused_over(http, "grpc", "invalid")
    calls = [
        lambda md: stub.ListModels(pb.ListModelsRequest(), metadata=md, timeout=30),
        lambda md: stub.Sample(pb.SampleRequest(model="vae-tiny", n=1), metadata=md, timeout=30),
        lambda md: list(
            stub.StreamSample(pb.SampleRequest(model="vae-tiny", n=3), metadata=md, timeout=30)
        ),
    ]
    for call in calls:
        for metadata, reason in (
            (None, "authentication required"),
            (grpc_auth(WRONG_TOKEN), "not valid"),
        ):
            with pytest.raises(grpc.RpcError) as error:
                call(metadata)
            assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert reason in error.value.details()
    assert refused_over(http, "grpc", "missing") == missing + 3
    assert refused_over(http, "grpc", "invalid") == invalid + 3
    assert len(calls[0](grpc_auth(OTHER_TOKEN)).models) == 3
    assert len(calls[1](grpc_auth(TOKEN)).images) == 1
    assert sum(len(chunk.images) for chunk in calls[2](grpc_auth(TOKEN))) == 3


def test_grpc_health_and_reflection_need_no_token_by_default(guarded: ServerProcess) -> None:
    with grpc.insecure_channel(guarded.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=30)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
        assert "latentserve.v1.GenerativeService" in services


def test_open_inference_protocol_probes_need_no_token_over_grpc(guarded: ServerProcess) -> None:
    from tritonclient.grpc import service_pb2 as v2
    from tritonclient.grpc import service_pb2_grpc as v2_grpc

    with grpc.insecure_channel(guarded.grpc_target) as channel:
        stub = v2_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(v2.ServerLiveRequest(), timeout=30).live
        assert stub.ServerReady(v2.ServerReadyRequest(), timeout=30).ready
        with pytest.raises(grpc.RpcError) as refused:  # the service's other calls are not open
            stub.ServerMetadata(v2.ServerMetadataRequest(), timeout=30)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


# --- the OpenAI Images API answers refusals in its own error shape ----------------------


def assert_openai_error(error: Any, status: int, kind: str, code: str, message: str) -> None:
    """``error`` (an ``openai.APIStatusError``) parsed from the API's own error shape."""
    assert error.status_code == status
    assert error.message == f"Error code: {status} - {message}"
    assert (error.type, error.code, error.param) == (kind, code, None)
    assert error.body == {"message": message, "type": kind, "param": None, "code": code}


def test_openai_sdk_reads_the_refusals_of_the_security_layer(guarded: ServerProcess) -> None:
    import openai

    def client(token: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{guarded.http_url}/v1", api_key=token, max_retries=0)

    with client(WRONG_TOKEN) as stranger, pytest.raises(openai.AuthenticationError) as refused:
        stranger.images.generate(model="vae-tiny", prompt="a 3")
    invalid = "the bearer token is not valid"
    assert_openai_error(refused.value, 401, "authentication_error", "unauthenticated", invalid)
    assert refused.value.response.headers["www-authenticate"].startswith("Bearer ")

    image = ("big.png", bytes(100_000), "image/png")  # over this server's 65536-byte limit
    with client(TOKEN) as member, pytest.raises(openai.APIStatusError) as too_large:
        member.images.edit(model="vae-tiny", image=image, prompt="a 3")
    message = "request body exceeds 65536 bytes"
    assert_openai_error(too_large.value, 413, "invalid_request_error", "payload_too_large", message)
    # latentserve's own routes keep their shape
    native = httpx.get(f"{guarded.http_url}/v1/models")
    assert native.json()["error"] == {
        "code": "unauthenticated",
        "message": "authentication required: send the header 'Authorization: Bearer <token>'",
        "field": None,
    }


# --- the SDK and the CLI carry the token ------------------------------------------------


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_sdk_sends_its_token_and_raises_unauthenticated_without_one(
    guarded: ServerProcess, transport: str
) -> None:
    url = guarded.http_url if transport == "rest" else guarded.grpc_url
    with connect(url, token=TOKEN, timeout=30) as client:
        assert client.sample("vae-tiny", n=1, seed=3).seed == 3
    for token in (None, WRONG_TOKEN):
        with connect(url, token=token, timeout=30) as client, pytest.raises(UnauthenticatedError):
            client.list_models()


def latentserve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LATENTSERVE_")}
    return subprocess.run(
        [sys.executable, "-m", "latentserve.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment | (env or {}),
    )


def test_cli_takes_the_token_from_its_flag_or_the_environment(guarded: ServerProcess) -> None:
    listed = latentserve("models", "--url", guarded.grpc_url, env={"LATENTSERVE_TOKEN": TOKEN})
    assert listed.returncode == 0, listed.stderr
    assert "vae-tiny@2" in listed.stdout
    flagged = latentserve("models", "--url", guarded.http_url, "--token", OTHER_TOKEN)
    assert flagged.returncode == 0 and "vae-tiny@2" in flagged.stdout, flagged.stderr
    refused = latentserve("models", "--url", guarded.http_url, "--token", WRONG_TOKEN)
    assert refused.returncode == 1 and "unauthenticated" in refused.stderr
    assert WRONG_TOKEN not in refused.stderr


def test_no_token_reaches_the_server_log(guarded: ServerProcess, http: httpx.Client) -> None:
    for token in (TOKEN, WRONG_TOKEN):
        http.get("/v1/models", headers=bearer(token))
        with grpc.insecure_channel(guarded.grpc_target) as channel:
            stub = pb_grpc.GenerativeServiceStub(channel)
            with contextlib.suppress(grpc.RpcError):  # the wrong token is refused
                stub.ListModels(pb.ListModelsRequest(), metadata=grpc_auth(token), timeout=30)
    log = guarded.log()
    assert "authentication on: 2 token(s)" in log
    for token in (TOKEN, OTHER_TOKEN, WRONG_TOKEN):
        assert token not in log


# --- CORS -------------------------------------------------------------------------------


def preflight(http: httpx.Client, origin: str) -> httpx.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    return http.options("/v1/models/vae-tiny/sample", headers=headers)


def test_cors_preflight_is_answered_for_allowed_origins_without_a_token(
    http: httpx.Client,
) -> None:
    allowed = preflight(http, ORIGIN)
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    denied = preflight(http, "https://elsewhere.example")
    assert denied.status_code == 400
    assert "access-control-allow-origin" not in denied.headers


def test_cors_headers_let_a_browser_read_answers_and_refusals(http: httpx.Client) -> None:
    origin = {"Origin": ORIGIN}
    answer = http.get("/v1/models", headers=origin | bearer(TOKEN))
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    refusal = http.get("/v1/models", headers=origin)
    assert refusal.status_code == 401
    assert refusal.headers["access-control-allow-origin"] == ORIGIN
    assert "www-authenticate" in refusal.headers["access-control-expose-headers"].lower()
    assert "access-control-allow-origin" not in http.get("/healthz").headers


def test_cors_is_off_by_default(open_tls: ServerProcess, pki: Pki) -> None:
    with httpx.Client(base_url=open_tls.http_url, verify=ClientTLS(pki.ca.cert).ssl_context()) as h:
        response = preflight(h, ORIGIN)
        assert "access-control-allow-origin" not in response.headers
        assert response.status_code == 405


# --- /docs without a CDN ----------------------------------------------------------------


class _Assets(HTMLParser):
    """Every URL a page loads (src, href) and whether it has inline script."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_script = False
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]
        self.inline_script |= any(name.startswith("on") for name, _ in attrs)
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        self.inline_script |= self._in_script and bool(data.strip())


def test_docs_load_only_same_origin_assets_and_those_are_served(http: httpx.Client) -> None:
    page = http.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    parser = _Assets()
    parser.feed(page.text)
    assert not parser.inline_script
    assert len(parser.urls) >= 3
    types = {}
    for url in parser.urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = http.get(url)
        assert asset.status_code == 200, url
        types[url.rsplit("/", 1)[-1]] = asset.headers["content-type"].split(";")[0]
    assert types["swagger-ui-bundle.js"] == "text/javascript"
    assert types["swagger-ui.css"] == "text/css"
    assert b"SwaggerUIBundle" in http.get("/docs/static/latentserve-docs.js").content
    assert http.get("/docs/static/index.html").status_code == 404


def test_docs_send_a_csp_that_allows_no_other_origin_or_inline_script(http: httpx.Client) -> None:
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in http.get("/docs").headers["content-security-policy"].split(";")
    )
    assert policy["script-src"] == "'self'" and policy["default-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert not any("http" in sources for sources in policy.values())


# --- TLS --------------------------------------------------------------------------------


def test_rest_over_tls_trusts_the_generated_ca_only(open_tls: ServerProcess, pki: Pki) -> None:
    assert open_tls.http_url.startswith("https://")
    trusted = ClientTLS(pki.ca.cert).ssl_context()
    with httpx.Client(base_url=open_tls.http_url, verify=trusted, timeout=30) as h:
        assert h.get("/v1/models").json()["models"]
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{open_tls.http_url}/healthz", verify=ssl.create_default_context())
    plain = open_tls.http_url.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{plain}/healthz", timeout=10)


def test_sdk_over_tls_on_both_transports(open_tls: ServerProcess, pki: Pki) -> None:
    for url in (open_tls.http_url, open_tls.grpc_url):
        with connect(url, ca_file=pki.ca.cert, timeout=30) as client:
            assert client.sample("vae-tiny", n=1, seed=5).seed == 5
    other_ca = Path(pki.stranger.cert)  # a certificate that did not sign the server's
    for url in (open_tls.http_url, open_tls.grpc_url):
        with connect(url, ca_file=other_ca, timeout=10) as client, pytest.raises(UnavailableError):
            client.list_models()


def test_grpc_without_tls_cannot_talk_to_a_tls_server(open_tls: ServerProcess) -> None:
    with GrpcClient(open_tls.grpc_target, timeout=10) as client, pytest.raises(UnavailableError):
        client.list_models()


def test_grpc_requires_a_client_certificate_from_the_client_ca(
    locked: ServerProcess, pki: Pki
) -> None:
    target = locked.grpc_target
    trusted = ClientTLS(pki.ca.cert, pki.client.cert, pki.client.key)
    with GrpcClient(target, token=TOKEN, tls=trusted, timeout=30) as client:
        assert client.sample("vae-tiny", n=1, seed=1).seed == 1
    refused = [
        ClientTLS(pki.ca.cert),  # no client certificate
        ClientTLS(pki.ca.cert, pki.stranger.cert, pki.stranger.key),  # signed by another CA
    ]
    for tls in refused:
        client = GrpcClient(target, token=TOKEN, tls=tls, timeout=10)
        with client, pytest.raises(UnavailableError):
            client.list_models()
    with GrpcClient(target, tls=trusted, timeout=30) as client, pytest.raises(UnauthenticatedError):
        client.list_models()  # the certificate does not replace the token


def test_rest_on_a_client_ca_server_keeps_to_tokens(locked: ServerProcess, pki: Pki) -> None:
    with RestClient(locked.http_url, token=TOKEN, tls=ClientTLS(pki.ca.cert)) as client:
        assert [m.name for m in client.list_models()][:1] == ["ae-tiny"]


def test_the_exempt_paths_setting_decides_what_is_open(locked: ServerProcess, pki: Pki) -> None:
    verify = ClientTLS(pki.ca.cert).ssl_context()
    with httpx.Client(base_url=locked.http_url, verify=verify, timeout=30) as h:
        assert h.get("/healthz").status_code == 200
        assert_refused(h.get("/metrics"), None)
        assert_refused(h.get("/docs"), None)
        assert h.get("/metrics", headers=bearer(TOKEN)).status_code == 200
    credentials = ClientTLS(pki.ca.cert, pki.client.cert, pki.client.key).grpc_credentials()
    with grpc.secure_channel(locked.grpc_target, credentials) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="")
        with pytest.raises(grpc.RpcError) as error:
            health.Check(request, timeout=30)
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
        answer = health.Check(request, metadata=grpc_auth(TOKEN), timeout=30)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_cli_over_tls_with_a_client_certificate(locked: ServerProcess, pki: Pki) -> None:
    files = [
        "--ca-file", str(pki.ca.cert),
        "--client-cert", str(pki.client.cert), "--client-key", str(pki.client.key),
    ]  # fmt: skip
    listed = latentserve(
        "models", "--url", locked.grpc_url, *files, env={"LATENTSERVE_TOKEN": TOKEN}
    )
    assert listed.returncode == 0, listed.stderr
    assert "vae-tiny@2" in listed.stdout
    env = {"LATENTSERVE_TOKEN": TOKEN, "LATENTSERVE_CA_FILE": str(pki.ca.cert)}
    over_rest = latentserve("models", "--url", locked.http_url, env=env)
    assert over_rest.returncode == 0 and "vae-tiny@2" in over_rest.stdout, over_rest.stderr
