"""The real server process over real HTTP: happy paths, every refusal, and it keeps serving."""

from __future__ import annotations

import base64
import io
import subprocess
import threading

import httpx
import numpy as np
import pytest
from helpers.fakes import header_only_png
from helpers.server_process import ServerProcess, metric, until
from helpers.tools import require_tool
from PIL import Image

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> httpx.Client:
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        yield client


def sample(http: httpx.Client, model: str = "vae-tiny", **body: object) -> dict:
    response = http.post(f"/v1/models/{model}/sample", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def pixels(b64: str) -> np.ndarray:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert (image.size, image.mode) == ((28, 28), "L")
    return np.asarray(image)


def png_b64(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_models_are_listed_and_described(http: httpx.Client) -> None:
    models = http.get("/v1/models").json()["models"]
    assert [(m["name"], m["version"]) for m in models] == [
        ("ae-tiny", "1"),
        ("vae-tiny", "1"),
        ("vae-tiny", "2"),
    ]
    latest = http.get("/v1/models/vae-tiny").json()
    assert latest["version"] == "2" and latest["versions"] == ["1", "2"]
    assert latest["execution_providers"] == ["CPUExecutionProvider"]
    assert latest["backend"] == "onnxruntime" and latest["image"]["height"] == 28
    assert "sample" in latest["capabilities"]
    assert latest["pipeline"] == "latent_decoder"
    assert latest["sample_parameters"] == ["n", "seed", "temperature"]
    assert latest["sample_defaults"] == {"temperature": 1.0}
    assert http.get("/v1/models/vae-tiny@1").json()["version"] == "1"
    assert http.get("/v1/models/vae-tiny%401").json()["version"] == "1"
    assert http.get("/v1/models/ae-tiny").json()["max_batch_size"] == 64  # from server.toml


def test_sampling_is_reproducible_per_seed(http: httpx.Client) -> None:
    first = sample(http, n=3, seed=42)
    again = sample(http, n=3, seed=42, temperature=1.0)
    other = sample(http, n=3, seed=43)
    assert first["model"] == "vae-tiny@2" and first["seed"] == 42
    assert first["images"] == again["images"]
    assert first["images"] != other["images"]
    assert [pixels(i).shape for i in first["images"]] == [(28, 28)] * 3


def test_versions_are_distinct_models(http: httpx.Client) -> None:
    v1 = sample(http, "vae-tiny@1", n=2, seed=7)
    v2 = sample(http, "vae-tiny%402", n=2, seed=7)
    assert (v1["model"], v2["model"]) == ("vae-tiny@1", "vae-tiny@2")
    assert v1["images"] != v2["images"]


def test_the_server_draws_and_returns_a_seed(http: httpx.Client) -> None:
    drawn = sample(http, n=1)
    assert drawn["images"] == sample(http, n=1, seed=drawn["seed"])["images"]


def test_concurrent_requests_get_the_same_images_as_alone(http: httpx.Client) -> None:
    alone = {seed: sample(http, n=2, seed=seed)["images"] for seed in range(8)}
    together: dict[int, list[str]] = {}

    def worker(seed: int) -> None:
        together[seed] = sample(http, n=2, seed=seed)["images"]

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone


def test_encode_and_reconstruct(http: httpx.Client) -> None:
    images = sample(http, n=2, seed=1)["images"]
    encoded = http.post("/v1/models/vae-tiny/encode", json={"images": images})
    assert encoded.status_code == 200, encoded.text
    latents = np.asarray(encoded.json()["latents"])
    assert latents.shape == (2, 4) and np.isfinite(latents).all()
    rebuilt = http.post("/v1/models/ae-tiny/reconstruct", json={"images": images[:1]}).json()
    assert rebuilt["model"] == "ae-tiny@1" and pixels(rebuilt["images"][0]).shape == (28, 28)
    assert list(encoded.json()["groups"]) == ["latent"]
    assert encoded.json()["groups"]["latent"] == encoded.json()["latents"]


def log_prob(http: httpx.Client, images: list[str], **body: object) -> dict:
    response = http.post("/v1/models/vae-tiny/log-prob", json={"images": images, **body})
    assert response.status_code == 200, response.text
    return response.json()


def test_log_prob_says_which_bound_and_is_reproducible(http: httpx.Client) -> None:
    digits = sample(http, n=3, seed=4)["images"]
    noise = png_b64(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8))
    one = log_prob(http, [*digits, noise], seed=7)
    assert one["bound"] == "elbo" and one["samples"] == 1 and one["seed"] == 7
    assert one == log_prob(http, [*digits, noise], seed=7)  # same seed, same numbers
    many = log_prob(http, [*digits, noise], samples=64, seed=7)
    assert many["bound"] == "importance_weighted" and many["samples"] == 64
    # the model's own samples are far likelier than uniform noise, under either bound
    for result in (one, many):
        *scores, noise_score = result["bits_per_dim"]
        assert max(scores) < noise_score and all(0 < b < 16 for b in result["bits_per_dim"])
    assert log_prob(http, digits)["seed"] is not None  # drawn by the server and returned


def test_log_prob_refusals(http: httpx.Client) -> None:
    refused = http.post("/v1/models/ae-tiny/log-prob", json={"images": [GOOD]})
    assert refused.status_code == 400 and "does not support log_prob" in refused.text
    for samples in (0, 257, "3"):
        bad = http.post("/v1/models/vae-tiny/log-prob", json={"images": [GOOD], "samples": samples})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "samples", bad.text


GOOD = png_b64(np.zeros((28, 28), np.uint8))
TALL = png_b64(np.zeros((32, 28), np.uint8))
COLOUR = png_b64(np.zeros((28, 28, 3), np.uint8))
BOMB = base64.b64encode(header_only_png(4000, 4000)).decode()


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("vae-tiny/sample", {"n": 0}, "n"),
        ("vae-tiny/sample", {"n": -2}, "n"),
        ("vae-tiny/sample", {"n": 65}, "n"),
        ("vae-tiny/sample", {"n": "two"}, "n"),
        ("vae-tiny/sample", {"n": 1.5}, "n"),
        ("vae-tiny/sample", {"seed": -1}, "seed"),
        ("vae-tiny/sample", {"seed": "x"}, "seed"),
        ("vae-tiny/sample", {"temperature": 0}, "temperature"),
        ("vae-tiny/sample", {"n": 1, "colour": "red"}, "colour"),
        ("vae-tiny/encode", {"images": "abc"}, "images"),
        ("vae-tiny/encode", {"images": []}, "images"),
        ("vae-tiny/encode", {"images": [GOOD, 3]}, "images[1]"),
        ("vae-tiny/encode", {"images": [GOOD, "%%%not-base64"]}, "images[1]"),
        ("vae-tiny/encode", {"images": [base64.b64encode(b"hello").decode()]}, "images[0]"),
        ("vae-tiny/reconstruct", {"images": [TALL]}, "images[0]"),
        ("vae-tiny/reconstruct", {"images": [GOOD, COLOUR]}, "images[1]"),
        ("vae-tiny/encode", {"images": [BOMB]}, "images[0]"),
    ],
)
def test_bad_input_is_422_naming_the_field(
    http: httpx.Client, path: str, body: dict, field: str
) -> None:
    response = http.post(f"/v1/models/{path}", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_argument" and error["field"] == field
    assert error["message"]


@pytest.mark.parametrize("method", ["bogus", "encode", "", "Sample"])
def test_a_job_of_an_unknown_method_is_422_naming_method(http: httpx.Client, method: str) -> None:
    response = http.post("/v1/jobs", json={"model": "vae-tiny", "method": method})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_argument" and error["field"] == "method"


def test_malformed_json_is_422(http: httpx.Client) -> None:
    response = http.post(
        "/v1/models/vae-tiny/sample", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and response.json()["error"]["field"] == "body"


def test_the_bomb_is_refused_as_too_many_pixels(http: httpx.Client) -> None:
    response = http.post("/v1/models/vae-tiny/encode", json={"images": [BOMB]})
    assert "exceeds the 1000000-pixel limit" in response.json()["error"]["message"]


@pytest.mark.parametrize("path", ["nope", "vae-tiny@9", "vae-tiny@latest"])
def test_unknown_models_are_404(http: httpx.Client, path: str) -> None:
    response = http.post(f"/v1/models/{path}/sample", json={"n": 1})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert http.get(f"/v1/models/{path}").status_code == 404


def test_sampling_an_autoencoder_is_refused_clearly(http: httpx.Client) -> None:
    response = http.post("/v1/models/ae-tiny/sample", json={"n": 1})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unsupported" and "does not support sample" in error["message"]


def test_oversize_bodies_are_413(http: httpx.Client) -> None:
    huge = {"images": ["A" * 70_000]}
    assert http.post("/v1/models/vae-tiny/encode", json=huge).status_code == 413

    def chunks():  # no Content-Length: the limit must hold for streamed bodies too
        yield b'{"images": ["'
        for _ in range(20):
            yield b"A" * 4096
        yield b'"]}'

    response = http.post(
        "/v1/models/vae-tiny/encode", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_a_full_queue_is_429_with_retry_after(server: ServerProcess, http: httpx.Client) -> None:
    # ae-tiny: queue of one request, 1.5 s batch window (server.toml).
    body = {"images": [GOOD]}
    overloaded = {"method": "encode", "protocol": "rest", "status": "overloaded"}
    counted = metric(http, "latentserve_requests_total", **overloaded)
    results: list[httpx.Response] = []
    with httpx.Client(base_url=server.http_url, timeout=30) as first_client:
        waiting = threading.Thread(
            target=lambda: results.append(first_client.post("/v1/models/ae-tiny/encode", json=body))
        )
        waiting.start()
        until(lambda: metric(http, "latentserve_requests_in_flight", protocol="rest") >= 1)
        refused = httpx.post(f"{server.http_url}/v1/models/ae-tiny/encode", json=body, timeout=30)
        waiting.join()
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "overloaded"
    assert int(refused.headers["retry-after"]) >= 1
    assert results[0].status_code == 200
    assert metric(http, "latentserve_requests_total", **overloaded) == counted + 1


def test_health_docs_and_metrics(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").status_code == 200
    assert http.get("/docs").status_code == 200
    paths = http.get("/openapi.json").json()["paths"]
    assert "/v1/models/{model}/sample" in paths
    assert http.get("/no/such/route").json()["error"]["code"] == "not_found"
    rest = {"model": "vae-tiny@2", "protocol": "rest"}
    ok, invalid = ({"method": "sample", "status": s, **rest} for s in ("ok", "invalid_argument"))
    batch = {"graph": "sampler", "model": "vae-tiny@2"}
    before = [
        metric(http, "latentserve_requests_total", **ok),
        metric(http, "latentserve_requests_total", **invalid),
        metric(http, "latentserve_batch_items_count", **batch),
        metric(http, "latentserve_queue_wait_seconds_count", **batch),
        metric(http, "latentserve_batch_compute_seconds_count", **batch),
    ]
    sample(http, n=1, seed=0)
    assert http.post("/v1/models/vae-tiny/sample", json={"n": 0}).status_code == 422
    after = [
        metric(http, "latentserve_requests_total", **ok),
        metric(http, "latentserve_requests_total", **invalid),
        metric(http, "latentserve_batch_items_count", **batch),
        metric(http, "latentserve_queue_wait_seconds_count", **batch),
        metric(http, "latentserve_batch_compute_seconds_count", **batch),
    ]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1, 1, 1]
    assert metric(http, "latentserve_models_loaded") == 3


def test_promtool_finds_nothing_to_complain_about(http: httpx.Client) -> None:
    promtool = require_tool("promtool", "Debian: prometheus; make test-tools installs it")
    sample(http, n=2, seed=0)  # every histogram and counter has series to check
    assert http.post("/v1/models/vae-tiny/sample", json={"n": 0}).status_code == 422
    text = http.get("/metrics").text
    assert "latentserve_request_duration_seconds_bucket" in text
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0 and not check.stdout.strip(), check.stdout + check.stderr


def test_the_server_keeps_serving_after_all_of_that(
    server: ServerProcess, http: httpx.Client
) -> None:
    assert server.process.poll() is None
    assert http.get("/readyz").status_code == 200
    assert len(sample(http, n=64, seed=5)["images"]) == 64
