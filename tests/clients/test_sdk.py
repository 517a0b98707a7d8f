"""The SDK against a real server process, over REST and gRPC alike."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from helpers.server_process import ServerFactory, ServerProcess
from latentserve.clients import (
    NO_RETRY,
    AsyncGrpcClient,
    GrpcClient,
    InvalidArgumentError,
    ModelNotFoundError,
    OverloadedError,
    RestClient,
    UnavailableError,
    UnsupportedError,
    connect,
)
from latentserve.clients.local import free_port
from PIL import Image

pytestmark = pytest.mark.slow


def _pixels(images: list[Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(image, dtype=np.int16) for image in images])


def test_list_and_get_models(client) -> None:
    models = {m.name: m for m in client.list_models()}
    assert {"vae-tiny", "ae-tiny"} <= set(models)
    vae = models["vae-tiny"]
    assert vae.version == "2" and vae.versions == ["1", "2"]
    assert "sample" in vae.capabilities and "encode" in vae.capabilities
    assert "sample" not in models["ae-tiny"].capabilities
    assert client.get_model("vae-tiny@1").version == "1"
    assert client.get_model("vae-tiny") == vae


def test_sample_returns_seeded_images_of_the_model_shape(client) -> None:
    info = client.get_model("vae-tiny")
    result = client.sample("vae-tiny", n=3, seed=7)
    assert result.model == "vae-tiny@2" and result.seed == 7
    assert len(result.images) == 3
    for image in result.images:
        assert image.size == (info.image.width, info.image.height)
        assert len(image.getbands()) == info.image.channels
    again = client.sample("vae-tiny", n=3, seed=7)
    np.testing.assert_array_equal(_pixels(again.images), _pixels(result.images))
    other = client.sample("vae-tiny", n=3, seed=8)
    assert not np.array_equal(_pixels(other.images), _pixels(result.images))


def test_unseeded_sample_reports_the_seed_that_reproduces_it(client) -> None:
    drawn = client.sample("vae-tiny", n=2)
    replay = client.sample("vae-tiny", n=2, seed=drawn.seed)
    np.testing.assert_array_equal(_pixels(replay.images), _pixels(drawn.images))


def test_both_transports_draw_the_same_images(live_server: ServerProcess) -> None:
    with RestClient(live_server.http_url) as rest, GrpcClient(live_server.grpc_target) as grpc:
        over_rest = rest.sample("vae-tiny@1", n=4, seed=123, temperature=0.7)
        over_grpc = grpc.sample("vae-tiny@1", n=4, seed=123, temperature=0.7)
    assert over_rest.model == over_grpc.model == "vae-tiny@1"
    np.testing.assert_array_equal(_pixels(over_rest.images), _pixels(over_grpc.images))


def test_low_temperature_pulls_samples_together(client) -> None:
    spread = {}
    for temperature in (1.0, 0.01):
        images = _pixels(client.sample("vae-tiny", n=4, seed=5, temperature=temperature).images)
        spread[temperature] = np.abs(images - images[0]).mean()
    assert spread[0.01] < spread[1.0] / 4


def test_stream_sample_yields_every_image_in_order(client) -> None:
    whole = client.sample("vae-tiny", n=9, seed=11)
    chunks = list(client.stream_sample("vae-tiny", n=9, seed=11))
    offsets = [chunk.offset for chunk in chunks]
    assert offsets == sorted(offsets) and offsets[0] == 0
    streamed = [image for chunk in chunks for image in chunk.images]
    assert all(chunk.seed == 11 and chunk.model == "vae-tiny@2" for chunk in chunks)
    np.testing.assert_array_equal(_pixels(streamed), _pixels(whole.images))
    if isinstance(client, GrpcClient):
        assert len(chunks) > 1  # gRPC really streams; REST answers in one chunk


def test_sample_many_answers_each_request_and_returns_refusals(
    live_server: ServerProcess,
) -> None:
    requests = [
        {"model": "vae-tiny", "n": 2, "seed": 1},
        {"model": "vae-tiny", "steps": 4},  # not a parameter of a VAE
        {"model": "vae-tiny@1", "seed": 2, "temperature": 0.5},
    ]

    async def over_asyncio() -> list:
        async with AsyncGrpcClient(live_server.grpc_target) as client:
            return [pair async for pair in client.sample_many(iter(requests))]

    with GrpcClient(live_server.grpc_target) as client:
        outcomes = dict(client.sample_many(requests))
        unary = [client.sample(**requests[0]), client.sample(**requests[2])]
    assert sorted(outcomes) == [0, 1, 2]
    assert isinstance(outcomes[1], InvalidArgumentError) and outcomes[1].field == "steps"
    for index, expected in zip((0, 2), unary, strict=True):
        assert (outcomes[index].model, outcomes[index].seed) == (expected.model, expected.seed)
        np.testing.assert_array_equal(_pixels(outcomes[index].images), _pixels(expected.images))
    from_asyncio = dict(asyncio.run(over_asyncio()))
    assert isinstance(from_asyncio[1], InvalidArgumentError)
    np.testing.assert_array_equal(_pixels(from_asyncio[2].images), _pixels(unary[1].images))


def test_encode_and_reconstruct(client) -> None:
    info = client.get_model("vae-tiny")
    images = client.sample("vae-tiny", n=3, seed=3).images
    latents = client.encode("vae-tiny", images)
    assert latents.shape == (3, *info.latent_shape) and latents.dtype == np.float32
    assert np.isfinite(latents).all()
    as_arrays = client.encode("vae-tiny", [np.asarray(image) for image in images])
    np.testing.assert_allclose(as_arrays, latents, rtol=1e-5, atol=1e-6)
    rebuilt = client.reconstruct("vae-tiny", images)
    assert [image.size for image in rebuilt] == [image.size for image in images]
    assert client.encode("ae-tiny", images[:1]).shape[0] == 1


def test_unknown_models_raise_model_not_found(client) -> None:
    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        client.sample("no-such-model", n=1)
    with pytest.raises(ModelNotFoundError):
        client.get_model("vae-tiny@99")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"n": 0}, "n"), ({"n": 100_000}, "n"), ({"n": 1, "temperature": 0.0}, "temperature")],
)
def test_bad_arguments_raise_invalid_argument_naming_the_field(client, kwargs, field) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        client.sample("vae-tiny", **kwargs)
    assert caught.value.field == field
    assert field in caught.value.message


def test_images_that_are_not_images_are_invalid(client) -> None:
    with pytest.raises(InvalidArgumentError):
        client.encode("vae-tiny", [b"\x89PNG\r\n\x1a\n but not really"])


def test_a_missing_capability_is_refused(client) -> None:
    with pytest.raises(UnsupportedError, match="sample"):
        client.sample("ae-tiny", n=1)


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_no_server_raises_unavailable(scheme: str) -> None:
    with (
        connect(f"{scheme}://127.0.0.1:{free_port()}", timeout=3) as nobody,
        pytest.raises(UnavailableError),
    ):
        nobody.list_models()


@pytest.fixture(scope="module")
def tight_server(tiny_repository: Path, start_server: ServerFactory) -> Iterator[ServerProcess]:
    """A server whose vae-tiny queue holds one item, so a burst must overflow it."""
    config = "[models.vae-tiny]\nmax_batch_size = 1\nmax_queue_size = 1\n"
    with start_server(tiny_repository, "tight", config) as server:
        yield server


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_a_full_queue_raises_overloaded_with_a_retry_delay(
    tight_server: ServerProcess, transport: str
) -> None:
    # Without retries: the refusal itself is what is checked here (test_sdk_retry_integration
    # covers a retry that is then served).
    if transport == "rest":
        sdk_client = RestClient(tight_server.http_url, retry=NO_RETRY)
    else:
        sdk_client = GrpcClient(tight_server.grpc_target, retry=NO_RETRY)

    def call(_: int) -> OverloadedError | None:
        try:
            sdk_client.sample("vae-tiny", n=8)
        except OverloadedError as exc:
            return exc
        return None

    with sdk_client, ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(call, range(32)))
    refused = [exc for exc in outcomes if exc is not None]
    assert 0 < len(refused) < len(outcomes)  # some served, the overflow refused
    assert all(exc.retry_after_s and exc.retry_after_s >= 1 for exc in refused)
    assert "queue" in refused[0].message
