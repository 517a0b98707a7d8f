"""The service layer and the latent_decoder pipeline over fake graphs."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
import pytest
from helpers.fakes import POISON, SIZE, fake_manifest, fake_service, sample_params
from helpers.fakes import vae_service as make_service
from latentserve.server.codecs import encode_png
from latentserve.server.engine.batcher import BatchFailed
from latentserve.server.engine.service import GenerativeService
from latentserve.server.errors import InvalidArgument, ModelNotFound, Unavailable, Unsupported
from latentserve.server.metrics import ServerMetrics
from latentserve.server.settings import ModelOverrides, Settings
from PIL import Image
from prometheus_client import CollectorRegistry


def run(coro):  # noqa: ANN001, ANN201 - test helper
    return asyncio.run(coro)


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def test_same_seed_same_images_whatever_shares_the_batch(tmp_path: Path) -> None:
    service, graphs = make_service(tmp_path)

    async def main() -> tuple[list, list]:
        calls = [
            service.sample("fake-vae", sample_params(3, seed, 0.8), "test") for seed in (1, 2, 3, 1)
        ]
        together = await asyncio.gather(*calls)
        alone = [
            await service.sample("fake-vae", sample_params(3, seed, 0.8), "test")
            for seed in (1, 2, 3)
        ]
        return together, alone

    batched, single = run(main())
    assert max(graphs["fake-vae@2"]["sampler"].batch_sizes) > 3  # requests did share batches
    for a, b in zip(batched, single, strict=False):
        assert a.images == b.images and a.model == "fake-vae@2"
    assert batched[0].images == batched[3].images
    assert batched[0].images != batched[1].images


def test_seed_is_drawn_and_returned_when_omitted(tmp_path: Path) -> None:
    service, _ = make_service(tmp_path)

    async def main() -> tuple:
        first = await service.sample("fake-vae", sample_params(2, None, None), "test")
        return first, await service.sample("fake-vae", sample_params(2, first.seed, None), "test")

    first, again = run(main())
    assert 0 <= first.seed < 2**63 and again.images == first.images


def test_temperature_changes_images(tmp_path: Path) -> None:
    service, _ = make_service(tmp_path)

    async def main() -> tuple:
        cold = await service.sample("fake-vae", sample_params(1, 5, 0.1), "test")
        return cold, await service.sample("fake-vae", sample_params(1, 5, 2.0), "test")

    cold, warm = run(main())
    assert pixels(cold.images[0]).std() < pixels(warm.images[0]).std()


def test_a_request_without_temperature_gets_the_models_default(tmp_path: Path) -> None:
    manifest = fake_manifest("fake-cold", "1")
    cold_latent = manifest.latent.model_copy(update={"default_temperature": 0.25})
    service, _ = fake_service(tmp_path, [manifest.model_copy(update={"latent": cold_latent})])

    async def main() -> list:
        return [
            await service.sample("fake-cold", sample_params(2, 9, temperature), "test")
            for temperature in (None, 0.25, 1.0)
        ]

    default, quarter, one = run(main())
    assert default.images == quarter.images and default.images != one.images
    (described,) = service.list_models()
    assert described.parameter_schemas["sample"]["properties"]["temperature"]["default"] == 0.25


@pytest.mark.parametrize(
    ("n", "seed", "temperature", "field"),
    [
        (0, 1, 1.0, "n"),
        (-3, 1, 1.0, "n"),
        (17, 1, 1.0, "n"),
        (1, -1, 1.0, "seed"),
        (1, 2**64, 1.0, "seed"),
        (1, 1, 0.0, "temperature"),
        (1, 1, float("nan"), "temperature"),
    ],
)
def test_bad_sample_arguments_name_the_field(
    tmp_path: Path, n: int, seed: int, temperature: float, field: str
) -> None:
    service, _ = make_service(tmp_path)
    with pytest.raises(InvalidArgument) as err:
        run(service.sample("fake-vae", sample_params(n, seed, temperature), "test"))
    assert err.value.field == field


def test_models_resolve_by_name_and_version(tmp_path: Path) -> None:
    service, _ = make_service(tmp_path)
    assert (
        run(service.sample("fake-vae@1", sample_params(1, 0, None), "test")).model == "fake-vae@1"
    )
    assert service.get_model("fake-vae").version == "2"  # latest
    assert service.get_model("fake-vae@1").versions == ["1", "2"]
    assert [(d.name, d.version) for d in service.list_models()] == [
        ("fake-ae", "1"),
        ("fake-vae", "1"),
        ("fake-vae", "2"),
    ]
    for ref in ("nope", "fake-vae@3", "fake-vae@x", ""):
        with pytest.raises(ModelNotFound):
            service.get_model(ref)


def test_a_model_without_a_prior_refuses_to_sample(tmp_path: Path) -> None:
    service, _ = make_service(tmp_path)
    with pytest.raises(Unsupported, match="does not support sample"):
        run(service.sample("fake-ae", sample_params(1, 0, None), "test"))


def test_encode_and_reconstruct(tmp_path: Path) -> None:
    service, _ = make_service(tmp_path)
    ramp = (np.arange(SIZE * SIZE) % 256).reshape(SIZE, SIZE, 1).astype(np.uint8)
    png = encode_png(ramp)

    async def main() -> tuple:
        encoded = await service.encode("fake-ae", [png, png], "test")
        return encoded, await service.reconstruct("fake-ae", [png], "test")

    encoded, rebuilt = run(main())
    assert encoded.model == "fake-ae@1" and list(encoded.groups) == ["latent"]
    assert encoded.groups["latent"].shape == (2, 3)
    flat = ramp.reshape(-1) / 255.0
    expected = [flat[j::3].mean() for j in range(3)]
    np.testing.assert_allclose(encoded.groups["latent"][0], expected, rtol=1e-5)
    values = pixels(rebuilt.images[0]).reshape(-1)
    expected_pixels = np.rint(np.asarray(expected)[np.arange(SIZE * SIZE) % 3] * 255)
    np.testing.assert_array_equal(values, expected_pixels)


def test_each_reconstruction_is_closer_to_its_own_input_than_to_the_others(
    tmp_path: Path,
) -> None:
    # Eight images of different brightness in one batch: a reconstruction that comes back
    # in another row, or ignores its input, is as close to the others as to its own.
    service, graphs = make_service(tmp_path)
    rng = np.random.default_rng(0)
    levels = np.linspace(0.1, 0.9, 8)
    inputs = np.clip(levels[:, None, None] + rng.normal(0, 0.03, (8, SIZE, SIZE)), 0, 1)
    pngs = [encode_png(np.rint(image * 255).astype(np.uint8)[..., None]) for image in inputs]

    rebuilt = run(service.reconstruct("fake-vae", pngs, "test"))
    assert graphs["fake-vae@2"]["encoder"].batch_sizes == [8]  # one batch for all of them
    out = np.stack([pixels(png).reshape(SIZE, SIZE) for png in rebuilt.images]) / 255
    own = np.mean((out - inputs) ** 2)
    shuffled = np.mean([np.mean((out - np.roll(inputs, k, axis=0)) ** 2) for k in range(1, 8)])
    assert own < 0.1 * shuffled, (own, shuffled)


def test_image_count_and_content_are_validated(tmp_path: Path) -> None:
    service, _ = make_service(tmp_path)
    good = encode_png(np.zeros((SIZE, SIZE, 1), np.uint8))
    with pytest.raises(InvalidArgument) as none:
        run(service.encode("fake-vae", [], "test"))
    assert none.value.field == "images"
    with pytest.raises(InvalidArgument) as many:
        run(service.encode("fake-vae", [good] * 17, "test"))
    assert many.value.field == "images"
    with pytest.raises(InvalidArgument) as bad:
        run(service.reconstruct("fake-vae", [good, good, b"junk"], "test"))
    assert bad.value.field == "images[2]"


def test_stream_yields_chunks_before_the_last_is_computed(tmp_path: Path) -> None:
    service, graphs = make_service(tmp_path, delay_s=0.05, stream_chunk_size=2)
    sampler = graphs["fake-vae@2"]["sampler"]

    async def main() -> tuple[list, int]:
        chunks, calls_at_first = [], None
        async for chunk in service.sample_stream("fake-vae", sample_params(7, 11, None), "test"):
            if calls_at_first is None:
                calls_at_first = len(sampler.batch_sizes)
            chunks.append(chunk)
        return (
            chunks,
            calls_at_first,
            await service.sample("fake-vae", sample_params(7, 11, None), "test"),
        )

    chunks, calls_at_first, unary = run(main())
    assert [(c.offset, len(c.images)) for c in chunks] == [(0, 2), (2, 2), (4, 2), (6, 1)]
    assert calls_at_first < 4  # the first chunk left before the last batch ran
    assert [png for c in chunks for png in c.images] == unary.images


def test_a_poisoned_batch_fails_only_its_requests(tmp_path: Path) -> None:
    service, _ = make_service(tmp_path, models={"fake-vae": ModelOverrides(max_batch_size=1)})

    async def main() -> list:
        calls = [
            service.sample("fake-vae", sample_params(1, 1, t), "test") for t in (1.0, POISON, 0.5)
        ]
        return await asyncio.gather(*calls, return_exceptions=True)

    ok, failed, ok2 = run(main())
    assert isinstance(failed, BatchFailed)
    assert len(ok.images) == 1 and len(ok2.images) == 1


def test_settings_override_manifest_limits(tmp_path: Path) -> None:
    service, _ = make_service(tmp_path, models={"fake-vae": ModelOverrides(max_n=2)})
    assert service.get_model("fake-vae").max_n == 2
    with pytest.raises(InvalidArgument):
        run(service.sample("fake-vae", sample_params(3, 0, None), "test"))


def test_slow_jobs_time_out_as_unavailable(tmp_path: Path) -> None:
    service, _ = make_service(tmp_path, delay_s=0.5, job_timeout_s=0.05)
    with pytest.raises(Unavailable, match="timed out"):
        run(service.sample("fake-vae", sample_params(1, 0, None), "test"))


def test_requests_are_counted_by_model_method_protocol_status(tmp_path: Path) -> None:
    service, _ = make_service(tmp_path)

    async def main() -> None:
        await service.sample("fake-vae", sample_params(1, 0, None), "grpc")
        with pytest.raises(InvalidArgument):
            await service.sample("fake-vae@1", sample_params(0, 0, None), "grpc")
        with pytest.raises(ModelNotFound):
            await service.sample("nope", sample_params(1, 0, None), "rest")

    run(main())
    registry = service.metrics.registry

    def count(model: str, protocol: str, status: str) -> float | None:
        labels = {"model": model, "method": "sample", "protocol": protocol, "status": status}
        return registry.get_sample_value("latentserve_requests_total", labels)

    assert count("fake-vae@2", "grpc", "ok") == 1
    assert count("fake-vae@1", "grpc", "invalid_argument") == 1
    assert count("unknown", "rest", "not_found") == 1
    assert registry.get_sample_value("latentserve_models_loaded") == 3
    assert registry.get_sample_value("latentserve_requests_in_flight", {"protocol": "grpc"}) == 0


def test_not_ready_until_loaded(tmp_path: Path) -> None:
    service = GenerativeService(Settings(repository=tmp_path), ServerMetrics(CollectorRegistry()))
    assert not service.ready
    with pytest.raises(Unavailable):
        service.list_models()
