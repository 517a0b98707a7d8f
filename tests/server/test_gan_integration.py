"""GANs end to end: tiny DCGAN and StyleGAN2 models trained and exported by the real code,
served by a real server (torch blocked), sampled and interpolated over REST and gRPC with
truncation and style mixing; the fields a generator lacks and the capabilities it lacks are
refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from helpers.server_process import ServerFactory, ServerProcess
from latentserve.clients import InvalidArgumentError, UnsupportedError
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc

from latentserve.manifest import Manifest

pytestmark = pytest.mark.slow

MODELS = ["dcgan-tiny", "stylegan2-tiny"]  # the gan_repository fixture's models


@pytest.fixture(scope="module")
def server(gan_repository: Path, start_server: ServerFactory) -> Iterator:
    with start_server(gan_repository, "gans") as process:
        yield process


def pixels(images: list) -> np.ndarray:
    return np.stack([np.asarray(image) for image in images]).astype(np.int16)


@pytest.fixture(scope="module")
def style_layers(gan_repository: Path) -> int:
    generator = Manifest.load(gan_repository / "stylegan2-tiny" / "1").generator
    assert generator is not None
    return generator.style_layers


@pytest.mark.parametrize(
    ("model", "params"),
    [
        ("dcgan-tiny", {"truncation": 0.7}),
        ("stylegan2-tiny", {"truncation": 0.5, "mix_seed": 11, "mix_layer": 2}),
    ],
)
def test_same_request_same_images_over_rest_grpc_and_streaming(
    clients: tuple, model: str, params: dict
) -> None:
    rest, grpc_client = clients
    one = rest.sample(model, n=5, seed=3, **params)
    other = grpc_client.sample(model, n=5, seed=3, **params)
    assert one.model == other.model == f"{model}@1" and one.seed == 3
    np.testing.assert_array_equal(pixels(one.images), pixels(other.images))
    chunks = list(grpc_client.stream_sample(model, n=5, seed=3, **params))
    assert [c.offset for c in chunks] == [0, 2, 4]  # stream_chunk_size = 2
    streamed = [image for c in chunks for image in c.images]
    np.testing.assert_array_equal(pixels(streamed), pixels(one.images))
    assert not np.array_equal(
        pixels(rest.sample(model, n=5, seed=4, **params).images), pixels(one.images)
    )


@pytest.mark.parametrize("model", MODELS)
def test_truncation_pulls_samples_together(clients: tuple, model: str) -> None:
    rest, _ = clients
    spread = {}
    for psi in (1.0, 0.5, 0.0):
        images = pixels(rest.sample(model, n=8, seed=5, truncation=psi).images)
        spread[psi] = float(images.std(axis=0).mean())
    assert spread[1.0] > spread[0.5] > spread[0.0], spread
    default = pixels(rest.sample(model, n=8, seed=5).images)
    np.testing.assert_array_equal(
        default, pixels(rest.sample(model, n=8, seed=5, truncation=1.0).images)
    )


def test_dcgan_at_zero_truncation_draws_the_mean_latent_every_time(clients: tuple) -> None:
    images = pixels(clients[0].sample("dcgan-tiny", n=4, seed=8, truncation=0.0).images)
    assert all(np.array_equal(images[0], image) for image in images)


def test_style_mixing_takes_the_fine_styles_from_mix_seed(
    clients: tuple, style_layers: int
) -> None:
    rest, grpc_client = clients
    plain = pixels(rest.sample("stylegan2-tiny", n=3, seed=1).images)
    # mix_layer = the style count mixes nothing in; 0 takes every style from mix_seed
    unmixed = rest.sample("stylegan2-tiny", n=3, seed=1, mix_seed=2, mix_layer=style_layers)
    np.testing.assert_array_equal(pixels(unmixed.images), plain)
    mixed = pixels(grpc_client.sample("stylegan2-tiny", n=3, seed=1, mix_seed=2).images)
    assert not np.array_equal(mixed, plain)
    halfway = rest.sample("stylegan2-tiny", n=3, seed=1, mix_seed=2, mix_layer=style_layers // 2)
    np.testing.assert_array_equal(pixels(halfway.images), mixed)  # the default mix_layer
    all_styles = pixels(rest.sample("stylegan2-tiny", n=3, seed=1, mix_seed=2, mix_layer=0).images)
    other_seed = pixels(rest.sample("stylegan2-tiny", n=3, seed=1, mix_seed=9, mix_layer=0).images)
    assert not np.array_equal(all_styles, other_seed)
    assert not np.array_equal(all_styles, mixed)


def test_model_info_lists_each_generators_parameters(clients: tuple) -> None:
    rest, grpc_client = clients
    for client in (rest, grpc_client):
        dcgan = client.get_model("dcgan-tiny")
        style = client.get_model("stylegan2-tiny")
        assert dcgan.pipeline == style.pipeline == "gan"
        assert dcgan.capabilities == style.capabilities == ["sample", "interpolate"]
        assert dcgan.sample_parameters == ["n", "seed", "truncation"]
        assert dcgan.sample_defaults == {} == style.sample_defaults
        assert style.sample_parameters == ["n", "seed", "truncation", "mix_seed", "mix_layer"]


@pytest.mark.parametrize(
    ("model", "params", "field", "message"),
    [
        ("dcgan-tiny", {"mix_seed": 2}, "mix_seed", "not a sample parameter"),
        ("dcgan-tiny", {"mix_layer": 1}, "mix_layer", "not a sample parameter"),
        ("dcgan-tiny", {"temperature": 0.5}, "temperature", "generator models take"),
        ("stylegan2-tiny", {"truncation": 1.5}, "truncation", "between 0 and 1"),
        ("stylegan2-tiny", {"mix_layer": 2}, "mix_layer", "needs mix_seed"),
        ("stylegan2-tiny", {"mix_seed": 2, "mix_layer": 99}, "mix_layer", "between 0 and"),
        ("stylegan2-tiny", {"steps": 10}, "steps", "style-based generator models take"),
    ],
)
def test_fields_a_generator_lacks_are_refused_by_name(
    clients: tuple, model: str, params: dict, field: str, message: str
) -> None:
    for client in clients:
        with pytest.raises(InvalidArgumentError, match=message) as caught:
            client.sample(model, n=1, seed=0, **params)
        assert caught.value.field == field


def test_raw_transports_refuse_with_4xx_and_invalid_argument(server: ServerProcess) -> None:
    response = httpx.post(
        f"{server.http_url}/v1/models/dcgan-tiny/sample", json={"mix_seed": 3}, timeout=30
    )
    assert response.status_code == 422 and "mix_seed" in response.text
    with grpc.insecure_channel(server.grpc_url.removeprefix("grpc://")) as channel:
        stub = pb_grpc.GenerativeServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Sample(pb.SampleRequest(model="dcgan-tiny", mix_layer=1), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ("field", "mix_layer") in tuple(caught.value.trailing_metadata())


@pytest.mark.parametrize("model", MODELS)
def test_encode_reconstruct_and_log_prob_are_not_supported(clients: tuple, model: str) -> None:
    for client in clients:
        image = client.sample(model, n=1, seed=0).images
        for call in (client.encode, client.reconstruct, client.log_prob):
            with pytest.raises(UnsupportedError, match="does not support"):
                call(model, image)


@pytest.mark.parametrize(("model", "truncation"), [("dcgan-tiny", 0.7), ("stylegan2-tiny", 0.5)])
def test_interpolation_ends_are_exactly_the_images_sample_gives(
    clients: tuple, model: str, truncation: float
) -> None:
    rest, grpc_client = clients
    ends = [
        pixels(rest.sample(model, n=1, seed=seed, truncation=truncation).images)[0]
        for seed in (11, 12)
    ]
    strips = []
    for client in (rest, grpc_client):
        result = client.interpolate(model, 11, 12, 5, truncation=truncation)
        assert result.model == f"{model}@1" and (result.seed_a, result.seed_b) == (11, 12)
        frames = pixels(result.images)
        assert frames.shape[0] == 5
        np.testing.assert_array_equal(frames[0], ends[0])
        np.testing.assert_array_equal(frames[-1], ends[1])
        assert not np.array_equal(frames[2], frames[0])  # the middle is a frame of its own
        strips.append(frames)
    np.testing.assert_array_equal(strips[0], strips[1])
    untruncated = pixels(rest.interpolate(model, 11, 12, 5).images)
    assert not np.array_equal(untruncated[0], ends[0])  # truncation reaches every frame


# the server's refusal, or the gRPC SDK's for a name InterpolateRequest has no field for
NOT_A_PARAMETER = "not an interpolation parameter|not a parameter of InterpolateRequest"


@pytest.mark.parametrize(
    ("model", "params", "field", "message"),
    [
        ("dcgan-tiny", {"frames": 1}, "frames", "between 2 and 64"),
        ("stylegan2-tiny", {"frames": 65}, "frames", "between 2 and 64"),
        ("stylegan2-tiny", {"truncation": 1.5}, "truncation", "between 0 and 1"),
        ("stylegan2-tiny", {"mix_seed": 2}, "mix_seed", NOT_A_PARAMETER),
        ("dcgan-tiny", {"temperature": 0.5}, "temperature", NOT_A_PARAMETER),
    ],
)
def test_bad_interpolation_parameters_are_refused_naming_the_field(
    clients: tuple, model: str, params: dict, field: str, message: str
) -> None:
    for client in clients:
        with pytest.raises(InvalidArgumentError, match=message) as caught:
            client.interpolate(model, 1, 2, **params)
        assert caught.value.field == field
