"""The pixel-level PixelCNN served end to end: a real server (torch blocked) steps its
position graph pixel by pixel; REST and gRPC agree; log-prob is exact; what it cannot do
(encode, interpolate, importance samples) is refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.server_process import ServerFactory, ServerProcess, metric, pixels
from latentserve.clients import InvalidArgumentError, UnsupportedError

pytestmark = pytest.mark.slow
MODEL = "pixelcnn-tiny"


@pytest.fixture(scope="module")
def server(family_repository: Path, start_server: ServerFactory) -> Iterator:
    with start_server(family_repository, "pixelcnn") as process:
        yield process


def test_sampling_is_reproducible_across_transports_and_streaming(clients: tuple) -> None:
    rest, grpc = clients
    info = grpc.get_model(MODEL)
    assert (info.family, info.pipeline, info.likelihood) == (
        "pixelcnn",
        "autoregressive_prior",
        "exact",
    )
    one = rest.sample(MODEL, n=3, seed=5, temperature=0.9)
    other = grpc.sample(MODEL, n=3, seed=5, temperature=0.9)
    np.testing.assert_array_equal(pixels(one.images), pixels(other.images))
    streamed = [
        image for c in grpc.stream_sample(MODEL, n=3, seed=5, temperature=0.9) for image in c.images
    ]
    np.testing.assert_array_equal(pixels(streamed), pixels(one.images))
    assert pixels(one.images).shape == (3, 28, 28)
    assert not np.array_equal(pixels(rest.sample(MODEL, n=3, seed=6).images), pixels(one.images))


def test_the_server_steps_the_position_graph_once_per_pixel(
    server: ServerProcess, clients: tuple
) -> None:
    import httpx

    with httpx.Client(base_url=server.http_url, timeout=10) as http:
        labels = {"model": f"{MODEL}@1", "graph": "prior"}
        before = metric(http, "latentserve_batch_items_count", **labels)
        clients[1].sample(MODEL, n=2, seed=0)
        after = metric(http, "latentserve_batch_items_count", **labels)
    assert after - before >= 28 * 28  # at least one step batch per pixel


def test_log_prob_is_exact_and_prefers_the_models_own_samples(clients: tuple) -> None:
    rest, grpc = clients
    own = rest.sample(MODEL, n=3, seed=2).images
    noise = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    by_rest = rest.log_prob(MODEL, [*own, noise])
    by_grpc = grpc.log_prob(MODEL, [*own, noise])
    assert by_rest.bound == by_grpc.bound == "exact" and by_rest.seed is None
    np.testing.assert_allclose(by_rest.bits_per_dim, by_grpc.bits_per_dim, rtol=1e-5)
    assert max(by_rest.bits_per_dim[:3]) < by_rest.bits_per_dim[3]
    with pytest.raises(InvalidArgumentError, match="samples must be 1"):
        grpc.log_prob(MODEL, own, samples=4)


@pytest.mark.parametrize("transport", [0, 1])
def test_what_it_cannot_do_is_refused(clients: tuple, transport: int) -> None:
    client = clients[transport]
    image = client.sample(MODEL, n=1, seed=0).images
    with pytest.raises(UnsupportedError, match="does not support encode"):
        client.encode(MODEL, image)
    with pytest.raises(UnsupportedError, match="does not support interpolate"):
        client.interpolate(MODEL, 1, 2, 4)
    with pytest.raises(InvalidArgumentError, match="steps"):
        client.sample(MODEL, n=1, steps=3)
