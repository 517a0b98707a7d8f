"""Every likelihood family end to end: a real server (torch blocked) over a repository of
tiny Glow, NVAE, VQ-VAE and VQ-VAE-2 models, driven through the SDK over REST and gRPC."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.server_process import ServerFactory, ServerProcess, pixels
from latentserve.clients import InvalidArgumentError

from latentserve.manifest import Manifest

pytestmark = pytest.mark.slow

# family -> (what log-prob computes with one sample, whether it takes noise samples)
LIKELIHOOD = {
    "glow": ("elbo", True),
    "nvae": ("elbo", True),
    "vqvae": ("elbo", False),
    "vqvae2": ("elbo", False),
}
MODELS = ["glow-tiny", "nvae-tiny", "vqvae-tiny", "vqvae2-tiny"]


@pytest.fixture(scope="module")
def server(family_repository: Path, start_server: ServerFactory) -> Iterator:
    with start_server(family_repository, "families") as process:
        yield process


@pytest.mark.parametrize("model", MODELS)
def test_sampling_agrees_across_transports_and_streaming(clients: tuple, model: str) -> None:
    rest, grpc = clients
    one = rest.sample(model, n=5, seed=3, temperature=0.8)
    other = grpc.sample(model, n=5, seed=3, temperature=0.8)
    assert one.model == other.model == f"{model}@1"
    np.testing.assert_array_equal(pixels(one.images), pixels(other.images))
    chunks = list(grpc.stream_sample(model, n=5, seed=3, temperature=0.8))
    assert [c.offset for c in chunks] == [0, 2, 4]  # stream_chunk_size = 2
    streamed = [image for c in chunks for image in c.images]
    np.testing.assert_array_equal(pixels(streamed), pixels(one.images))
    different = rest.sample(model, n=5, seed=4, temperature=0.8)
    assert not np.array_equal(pixels(different.images), pixels(one.images))


@pytest.mark.parametrize("model", MODELS)
def test_encode_returns_every_group(clients: tuple, model: str, family_repository: Path) -> None:
    rest, grpc = clients
    manifest = Manifest.load(family_repository / model / "1")
    images = rest.sample(model, n=3, seed=1).images
    by_rest = rest.encode_groups(model, images)
    by_grpc = grpc.encode_groups(model, images)
    groups = manifest.latent.encoded()
    assert list(by_rest) == list(by_grpc) == [g.name for g in groups]
    for group in groups:
        assert by_rest[group.name].shape == (3, *group.shape)
        assert by_rest[group.name].dtype == by_grpc[group.name].dtype == np.dtype(group.dtype)
        np.testing.assert_allclose(by_rest[group.name], by_grpc[group.name], rtol=1e-6)
    if len(groups) > 1:
        with pytest.raises(ValueError, match="encode_groups"):
            rest.encode(model, images)


def test_glow_reconstructs_its_input_exactly(clients: tuple) -> None:
    rest, grpc = clients
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (28, 28), dtype=np.uint8) for _ in range(2)]
    digits = pixels(rest.sample("glow-tiny", n=2, seed=2).images)
    images = [*noise, *digits]
    for client in (rest, grpc):
        rebuilt = pixels(client.reconstruct("glow-tiny", images))
        # exact inverse: within 1e-3 of the input after 8-bit rounding means equal levels
        np.testing.assert_array_equal(rebuilt, np.stack(images))


@pytest.mark.parametrize("model", MODELS)
def test_log_prob_names_its_bound_and_prefers_the_models_own_samples(
    clients: tuple, model: str
) -> None:
    rest, grpc = clients
    family = model.removesuffix("-tiny")
    kind, sampled = LIKELIHOOD[family]
    assert rest.get_model(model).likelihood == grpc.get_model(model).likelihood == kind
    images = rest.sample(model, n=3, seed=6, temperature=0.7).images
    uniform = np.random.default_rng(1).integers(0, 256, (28, 28), dtype=np.uint8)
    by_rest = rest.log_prob(model, [*images, uniform], seed=9)
    by_grpc = grpc.log_prob(model, [*images, uniform], seed=9)
    assert by_rest.bound == by_grpc.bound == kind and by_rest.samples == 1
    np.testing.assert_allclose(by_rest.bits_per_dim, by_grpc.bits_per_dim, rtol=1e-5)
    *own, noise = by_rest.bits_per_dim
    assert max(own) < noise and all(np.isfinite(by_rest.bits_per_dim))
    if sampled:
        assert by_rest.seed == 9
        tighter = grpc.log_prob(model, images, samples=32, seed=9)
        assert tighter.bound == "importance_weighted" and tighter.samples == 32
    else:
        assert by_rest.seed is None
        with pytest.raises(InvalidArgumentError, match="samples must be 1"):
            grpc.log_prob(model, images, samples=2)


@pytest.mark.parametrize(
    ("model", "graph", "positions"),
    [
        ("vqvae-tiny", "prior", 49),
        ("vqvae2-tiny", "prior_top", 49),
        ("vqvae2-tiny", "prior_bottom", 196),
    ],
)
def test_the_server_drove_each_prior_step_by_step(
    server: ServerProcess, clients: tuple, model: str, graph: str, positions: int
) -> None:
    import httpx

    def step_batches() -> float:
        text = httpx.get(f"{server.http_url}/metrics", timeout=10).text
        steps = [
            line
            for line in text.splitlines()
            if line.startswith("latentserve_batch_items_count")
            and f'model="{model}@1"' in line
            and f'graph="{graph}"' in line
        ]
        assert steps, f"no batches of the {graph} step graph were recorded"
        return float(steps[0].rsplit(" ", 1)[1])

    before = step_batches()  # the warm-up at start already stepped through once
    clients[1].sample(model, n=2, seed=0)
    # one step batch per code position (at least) for each sample request
    assert step_batches() - before >= positions
