"""Hot reload through the real server: a new version is served under continuous load over
REST and gRPC with no failed request, a broken one is refused while the old one serves, a
removed one is unloaded once its in-flight work ends, and only admins may reload."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from helpers.server_process import ServerFactory, ServerProcess, metric, until
from latentserve.clients import (
    ModelNotFoundError,
    PermissionDeniedError,
    ReloadResult,
    connect,
)
from latentserve.server.codecs import encode_base64, encode_png
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow

TOKEN = "reload-test-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
ADMIN_METADATA = (("authorization", f"Bearer {TOKEN}"),)
# ae-tiny waits 5 s to fill a batch: a request to it stays in flight across a reload.
SERVER_TOML = """
admin_tokens_file = "{tokens}"

[models.ae-tiny]
max_queue_delay_ms = 5000
max_batch_size = 64
"""
PNG = encode_png(np.zeros((28, 28, 1), np.uint8))


@pytest.fixture(scope="module")
def repository(tiny_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny repository that the tests here may change."""
    return Path(shutil.copytree(tiny_repository, tmp_path_factory.mktemp("reload") / "models"))


@pytest.fixture(scope="module")
def server(
    repository: Path, tmp_path_factory: pytest.TempPathFactory, start_server: ServerFactory
) -> Iterator[ServerProcess]:
    tokens = tmp_path_factory.mktemp("reload-tokens") / "admin-tokens"
    tokens.write_text(f"# who may reload\n{TOKEN}\n")
    with start_server(repository, "reload_server", SERVER_TOML.format(tokens=tokens)) as process:
        yield process


def latest(repository: Path, name: str) -> int:
    return max(int(p.name) for p in (repository / name).iterdir() if p.name.isdigit())


def publish(repository: Path, name: str, version: int, staging: Path, break_it: str = "") -> Path:
    """Copy the model's latest version as ``version`` (optionally broken), written aside and
    renamed into place, as a publisher should (a reload never sees half a folder)."""
    source = repository / name / str(latest(repository, name))
    folder = Path(shutil.copytree(source, staging / f"{name}-{version}"))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["version"] = str(version)
    sampler = manifest["graphs"]["sampler"]["files"]["onnx"] if break_it else {}
    if break_it == "checksum":  # a graph altered after export
        data = bytearray((folder / sampler["path"]).read_bytes())
        data[-1] ^= 0xFF
        (folder / sampler["path"]).write_bytes(bytes(data))
    elif break_it == "manifest":  # a graph role no pipeline knows
        manifest["graphs"]["painter"] = manifest["graphs"].pop("sampler")
    elif break_it == "contract":  # a sampler without the input its pipeline feeds it
        manifest["graphs"]["sampler"]["inputs"][0]["name"] = "seed"
    elif break_it == "graph":  # the checksum matches, but it is no ONNX graph
        garbage = b"not an onnx graph" * 64
        (folder / sampler["path"]).write_bytes(garbage)
        sampler["sha256"] = hashlib.sha256(garbage).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    target = repository / name / str(version)
    os.rename(folder, target)
    return target


def reload_rest(http: httpx.Client) -> dict:
    response = http.post("/v1/repository/reload", headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()


def reload_grpc(stub: pb_grpc.GenerativeServiceStub) -> pb.ReloadRepositoryResponse:
    return stub.ReloadRepository(pb.ReloadRepositoryRequest(), metadata=ADMIN_METADATA)


def version_state(http: httpx.Client, label: str, state: str) -> float:
    return metric(http, "latentserve_model_versions", model=label, state=state)


def reloads(http: httpx.Client, label: str, outcome: str) -> float:
    return metric(http, "latentserve_model_reloads_total", model=label, outcome=outcome)


class Load:
    """Clients sampling ``name`` without pause over REST and gRPC until stopped, keeping
    which version answered each request and every failure."""

    def __init__(self, server: ServerProcess, name: str) -> None:
        self.server = server
        self.name = name
        self.stop = threading.Event()
        self.answers: dict[str, list[str]] = {"rest": [], "grpc": []}
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(t,)) for t in self.answers]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def served(self, label: str) -> bool:
        """Whether ``label`` has answered over both transports."""
        return all(label in answers for answers in self.answers.values())

    def _run(self, transport: str) -> None:
        url = self.server.http_url if transport == "rest" else self.server.grpc_url
        with connect(url, timeout=60) as client:
            while not self.stop.is_set():
                try:
                    self.answers[transport].append(client.sample(self.name, n=2, seed=0).model)
                except Exception as exc:  # noqa: BLE001 - every failure is the finding
                    self.failures.append(f"{transport}: {exc!r}")


def test_a_new_version_takes_over_under_continuous_load_without_a_failed_request(
    server: ServerProcess,
    repository: Path,
    http: httpx.Client,
    stub: pb_grpc.GenerativeServiceStub,
    tmp_path: Path,
) -> None:
    old = latest(repository, "vae-tiny")
    new = old + 1
    old_label, new_label = f"vae-tiny@{old}", f"vae-tiny@{new}"
    with Load(server, "vae-tiny") as load:
        until(lambda: load.served(old_label), timeout=60)
        publish(repository, "vae-tiny", new, tmp_path)
        added = reload_rest(http)  # over REST
        assert added == {"loaded": [new_label], "removed": [], "refused": []}
        until(lambda: load.served(new_label), timeout=60)
        shutil.rmtree(repository / "vae-tiny" / str(old))
        removed = reload_grpc(stub)  # over gRPC
        assert list(removed.removed) == [old_label] and not removed.loaded
        served_after = {t: len(a) for t, a in load.answers.items()}
        until(lambda: all(len(load.answers[t]) > served_after[t] + 5 for t in served_after))
    assert load.failures == []
    for answers in load.answers.values():
        # "vae-tiny" moved to the new version once, and never back
        switch = answers.index(new_label)
        assert set(answers[:switch]) == {old_label} and set(answers[switch:]) == {new_label}
    until(lambda: version_state(http, old_label, "draining") == 0)  # unloaded
    assert version_state(http, new_label, "serving") == 1
    assert reloads(http, new_label, "loaded") == 1
    assert reloads(http, old_label, "removed") == 1
    assert http.get(f"/v1/models/{old_label}").status_code == 404
    assert http.get("/v1/models/vae-tiny").json()["versions"][-1] == str(new)


@pytest.mark.parametrize(
    ("break_it", "reason"),
    [
        ("checksum", "does not match manifest"),
        ("manifest", "unknown graph role 'painter'"),
        ("contract", "the latent_decoder contract needs inputs ['noise', 'temperature']"),
        ("graph", "sampler.onnx"),
    ],
)
def test_a_broken_version_is_refused_while_the_old_one_serves(
    server: ServerProcess,
    repository: Path,
    http: httpx.Client,
    stub: pb_grpc.GenerativeServiceStub,
    tmp_path: Path,
    break_it: str,
    reason: str,
) -> None:
    serving = latest(repository, "vae-tiny")
    broken = serving + 1
    label = f"vae-tiny@{broken}"
    refused_before = reloads(http, label, "refused")
    folder = publish(repository, "vae-tiny", broken, tmp_path, break_it)
    try:
        with Load(server, "vae-tiny") as load:
            result = reload_rest(http)
            until(lambda: all(len(a) >= 3 for a in load.answers.values()), timeout=60)
        assert result["loaded"] == [] and result["removed"] == []
        [refusal] = result["refused"]
        assert refusal["model"] == label and reason in refusal["error"], refusal
        assert load.failures == []
        assert {a for answers in load.answers.values() for a in answers} == {f"vae-tiny@{serving}"}
        assert http.get(f"/v1/models/{label}").status_code == 404
        assert reloads(http, label, "refused") == refused_before + 1
        assert "refused " + label in server.log()
        # reported again while it is on disk, but not tried again until its files change
        again = reload_grpc(stub)
        assert [(r.model, r.error) for r in again.refused] == [(label, refusal["error"])]
        assert reloads(http, label, "refused") == refused_before + 1
    finally:
        shutil.rmtree(folder)
    assert reload_rest(http) == {"loaded": [], "removed": [], "refused": []}


def test_a_removed_version_finishes_its_in_flight_request_before_it_unloads(
    repository: Path, http: httpx.Client
) -> None:
    label = f"ae-tiny@{latest(repository, 'ae-tiny')}"
    body = {"images": [encode_base64(PNG)]}
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(http.post, f"/v1/models/{label}/encode", json=body)
        until(lambda: metric(http, "latentserve_requests_in_flight", protocol="rest") >= 1)
        shutil.rmtree(repository / "ae-tiny" / label.split("@")[1])
        assert reload_rest(http)["removed"] == [label]
        assert not in_flight.done()  # it waits out ae-tiny's 5 s batch window
        assert version_state(http, label, "draining") == 1
        assert http.get(f"/v1/models/{label}").status_code == 404  # no new requests
        answer = in_flight.result()
    assert answer.status_code == 200 and answer.json()["model"] == label
    until(lambda: version_state(http, label, "draining") == 0)


def test_only_an_admin_token_may_reload(
    http: httpx.Client, stub: pb_grpc.GenerativeServiceStub
) -> None:
    missing = http.post("/v1/repository/reload")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"]["code"] == "unauthenticated"
    wrong = http.post("/v1/repository/reload", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "permission_denied"
    for metadata, code in [
        ((), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", "Bearer nope"),), grpc.StatusCode.PERMISSION_DENIED),
    ]:
        with pytest.raises(grpc.RpcError) as refused:
            stub.ReloadRepository(pb.ReloadRepositoryRequest(), metadata=metadata)
        assert refused.value.code() == code


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_the_sdk_and_the_cli_reload(
    server: ServerProcess, repository: Path, tmp_path: Path, transport: str
) -> None:
    url = server.http_url if transport == "rest" else server.grpc_url
    with connect(url) as client:
        client.reload_repository(TOKEN)  # whatever earlier tests left
        assert client.reload_repository(TOKEN) == ReloadResult([], [], {})
        with pytest.raises(PermissionDeniedError):
            client.reload_repository("not-the-token")
    new = latest(repository, "vae-tiny") + 1
    publish(repository, "vae-tiny", new, tmp_path)
    command = [sys.executable, "-m", "latentserve.cli", "reload", "--url", url]
    env = {**os.environ, "LATENTSERVE_ADMIN_TOKEN": TOKEN}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"loaded   vae-tiny@{new}"]


def test_the_reload_cli_exit_codes(server: ServerProcess, repository: Path, tmp_path: Path) -> None:
    """0 when all went well, 1 when the server refused the call or a version, 2 for no token."""

    def reload_cli(token: str | None) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != "LATENTSERVE_ADMIN_TOKEN"}
        if token is not None:
            env["LATENTSERVE_ADMIN_TOKEN"] = token
        command = [sys.executable, "-m", "latentserve.cli", "reload", "--url", server.grpc_url]
        return subprocess.run(command, env=env, capture_output=True, text=True, check=False)

    assert reload_cli(TOKEN).returncode == 0  # whatever earlier tests left is now served
    no_token = reload_cli(None)
    assert no_token.returncode == 2 and "LATENTSERVE_ADMIN_TOKEN" in no_token.stderr
    wrong = reload_cli("not-the-token")
    assert wrong.returncode == 1 and "latentserve reload:" in wrong.stderr
    new = latest(repository, "vae-tiny") + 1
    broken = publish(repository, "vae-tiny", new, tmp_path, break_it="manifest")
    refused = reload_cli(TOKEN)
    assert refused.returncode == 1, refused.stderr
    assert refused.stdout.startswith(f"refused  vae-tiny@{new}:")
    shutil.rmtree(broken)
    assert reload_cli(TOKEN).stdout.strip() == "nothing changed"


def test_polling_serves_new_versions_and_without_admin_tokens_no_one_may_reload(
    tiny_repository: Path, tmp_path: Path, start_server: ServerFactory
) -> None:
    repository = Path(shutil.copytree(tiny_repository, tmp_path / "models"))
    staging = tmp_path / "staging"
    staging.mkdir()
    polling = ["--repository-poll-interval", "0.2"]
    with start_server(repository, "polling", "", extra_args=polling) as server:
        with connect(server.http_url) as client:
            new = latest(repository, "ae-tiny") + 1
            with pytest.raises(ModelNotFoundError):
                client.get_model(f"ae-tiny@{new}")
            publish(repository, "ae-tiny", new, staging)
            until(lambda: client.get_model("ae-tiny").version == str(new), timeout=60)
            with pytest.raises(PermissionDeniedError, match="no admin tokens"):
                client.reload_repository(TOKEN)
        refused = httpx.post(f"{server.http_url}/v1/repository/reload", headers=ADMIN)
        assert refused.status_code == 403, refused.text
        assert "no admin tokens" in refused.json()["error"]["message"]
        with (
            grpc.insecure_channel(server.grpc_target) as channel,
            pytest.raises(grpc.RpcError) as denied,
        ):
            pb_grpc.GenerativeServiceStub(channel).ReloadRepository(
                pb.ReloadRepositoryRequest(), metadata=ADMIN_METADATA
            )
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
