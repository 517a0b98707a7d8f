"""Interpolation served end to end: real servers (torch blocked) over the tiny VAE, the
likelihood families and the tiny DDPM; the ends are bit-exactly ``sample``'s images for
n = 1 over REST and gRPC, gRPC streams one frame per message, models that encode also
interpolate between images, and every model without a continuous prior refuses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.server_process import ServerFactory, pixels
from latentserve.clients import InvalidArgumentError, UnsupportedError, connect

pytestmark = pytest.mark.slow


def _serve(repository: Path, start_server: ServerFactory) -> Iterator[tuple]:
    with (
        start_server(repository, "interpolate") as process,
        connect(process.http_url) as rest,
        connect(process.grpc_url) as grpc,
    ):
        yield rest, grpc


@pytest.fixture(scope="module")
def vae(tiny_repository: Path, start_server: ServerFactory) -> Iterator[tuple]:
    yield from _serve(tiny_repository, start_server)


@pytest.fixture(scope="module")
def families(family_repository: Path, start_server: ServerFactory) -> Iterator:
    yield from _serve(family_repository, start_server)


@pytest.fixture(scope="module")
def ddpm(diffusion_repository: Path, start_server: ServerFactory) -> Iterator:
    yield from _serve(diffusion_repository, start_server)


# (server fixture, model, interpolation params, the sample params that give the same ends)
CASES = [
    ("vae", "vae-tiny", {"temperature": 0.8}, {"temperature": 0.8}),
    ("families", "nvae-tiny", {}, {}),
    ("families", "glow-tiny", {"temperature": 0.7}, {"temperature": 0.7}),
    (
        "ddpm",
        "ddpm-tiny",
        {"steps": 4, "class_label": 3},
        {"steps": 4, "class_label": 3, "sampler": "ddim", "eta": 0.0},
    ),
]


@pytest.mark.parametrize(("server", "model", "params", "sample_params"), CASES)
def test_ends_are_exactly_the_images_sample_gives(
    request: pytest.FixtureRequest, server: str, model: str, params: dict, sample_params: dict
) -> None:
    rest, grpc = request.getfixturevalue(server)
    first = rest.sample(model, n=1, seed=11, **sample_params)
    a = pixels(first.images)[0]
    b = pixels(grpc.sample(model, n=1, seed=12, **sample_params).images)[0]
    for client in (rest, grpc):
        result = client.interpolate(model, 11, 12, 6, **params)
        assert (result.model, result.seed_a, result.seed_b) == (first.model, 11, 12)
        frames = pixels(result.images)
        assert frames.shape == (6, 28, 28)
        np.testing.assert_array_equal(frames[0], a)
        np.testing.assert_array_equal(frames[-1], b)
        assert not np.array_equal(frames[2], a) and not np.array_equal(frames[2], b)
    np.testing.assert_array_equal(
        pixels(rest.interpolate(model, 11, 12, 6, **params).images),
        pixels(grpc.interpolate(model, 11, 12, 6, **params).images),
    )


def test_grpc_streams_one_frame_per_message_in_order(vae: tuple) -> None:
    rest, grpc = vae
    streamed = list(grpc.stream_interpolate("vae-tiny", 3, 4, 9))  # stream_chunk_size = 2
    assert [f.index for f in streamed] == list(range(9))
    assert {(f.seed_a, f.seed_b) for f in streamed} == {(3, 4)}
    whole = rest.interpolate("vae-tiny", 3, 4, 9).images
    np.testing.assert_array_equal(pixels([f.image for f in streamed]), pixels(whole))


def test_unset_seeds_are_drawn_and_reported(vae: tuple) -> None:
    rest, _ = vae
    result = rest.interpolate("vae-tiny", frames=3)
    assert result.seed_a is not None and result.seed_b is not None
    again = rest.interpolate("vae-tiny", result.seed_a, result.seed_b, 3)
    np.testing.assert_array_equal(pixels(again.images), pixels(result.images))


@pytest.mark.parametrize(("server", "model"), [("vae", "vae-tiny"), ("families", "glow-tiny")])
def test_between_images_the_ends_are_their_reconstructions(
    request: pytest.FixtureRequest, server: str, model: str
) -> None:
    rest, grpc = request.getfixturevalue(server)
    images = rest.sample(model, n=2, seed=21).images
    rebuilt = pixels(rest.reconstruct(model, images))
    for client in (rest, grpc):
        result = client.interpolate(model, frames=5, image_a=images[0], image_b=images[1])
        assert result.seed_a is None and result.seed_b is None
        frames = pixels(result.images)
        assert frames.shape == (5, 28, 28)
        np.testing.assert_array_equal(frames[[0, -1]], rebuilt)


@pytest.mark.parametrize("transport", [0, 1])
def test_models_without_a_continuous_prior_refuse(
    vae: tuple, families: tuple, transport: int
) -> None:
    for clients, model in ((families, "vqvae-tiny"), (families, "vqvae2-tiny"), (vae, "ae-tiny")):
        with pytest.raises(UnsupportedError, match=f"{model}@1 .*does not support interpolate"):
            clients[transport].interpolate(model, 1, 2, 4)


# the server's refusal, or the gRPC SDK's for a name InterpolateRequest has no field for
NOT_A_PARAMETER = "not an interpolation parameter|not a parameter of InterpolateRequest"
BAD = [
    ("vae", "vae-tiny", {"frames": 1}, "frames", "between 2 and 64"),
    ("vae", "vae-tiny", {"frames": 65}, "frames", "between 2 and 64"),
    ("vae", "vae-tiny", {"n": 4}, "n", NOT_A_PARAMETER),
    ("vae", "vae-tiny", {"temperature": 0.0}, "temperature", "greater than or equal to 0.001"),
    ("vae", "vae-tiny", {"image_a": "A"}, "image_b", "both image_a and image_b"),
    ("vae", "vae-tiny", {"image_a": "A", "image_b": "A", "seed_a": 1}, "seed_a", "between seeds"),
    ("ddpm", "ddpm-tiny", {"sampler": "ddpm"}, "sampler", NOT_A_PARAMETER),
    ("ddpm", "ddpm-tiny", {"class_label": 99}, "class_label", "between 0 and"),
    ("ddpm", "ddpm-tiny", {"image_a": "A", "image_b": "A"}, "image_a", "not an interpolation"),
]


@pytest.mark.parametrize(("server", "model", "params", "field", "message"), BAD)
@pytest.mark.parametrize("transport", [0, 1])
def test_bad_parameters_are_refused_naming_the_field(
    request: pytest.FixtureRequest,
    server: str,
    model: str,
    params: dict,
    field: str,
    message: str,
    transport: int,
) -> None:
    client = request.getfixturevalue(server)[transport]
    digit = np.zeros((28, 28), np.uint8)  # any image of the model's size
    params = {k: digit if k.startswith("image_") else v for k, v in params.items()}
    with pytest.raises(InvalidArgumentError, match=message) as caught:
        client.interpolate(model, **params)
    assert caught.value.field == field
