"""The asyncio SDK against a real server process, over REST and gRPC alike: the same
answers as the sync SDK, concurrent calls on one client, jobs and errors."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from latentserve.clients import (
    AsyncGrpcClient,
    AsyncRestClient,
    InvalidArgumentError,
    JobNotFoundError,
    ModelNotFoundError,
    Result,
    UnsupportedError,
    connect,
    connect_async,
)
from latentserve.clients.local import LocalServer
from PIL import Image

pytestmark = pytest.mark.slow


def _pixels(images: list[Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(image, dtype=np.int16) for image in images])


@pytest.fixture(params=["rest", "grpc"])
def url(request: pytest.FixtureRequest, live_server: LocalServer) -> str:
    return live_server.http_url if request.param == "rest" else live_server.grpc_url


def test_connect_async_picks_the_transport_by_scheme(live_server: LocalServer) -> None:
    async def main() -> tuple[type, type]:
        async with connect_async(live_server.http_url) as rest:
            rest_type = type(rest)
        async with connect_async(live_server.grpc_url) as grpc_client:
            grpc_type = type(grpc_client)
        return rest_type, grpc_type

    assert asyncio.run(main()) == (AsyncRestClient, AsyncGrpcClient)


def test_async_calls_answer_as_the_sync_client_does(url: str) -> None:
    with connect(url, timeout=30) as sync:
        expected = sync.sample("vae-tiny", n=3, seed=11)
        expected_latents = sync.encode("vae-tiny", expected.images)

    async def main() -> tuple:
        async with connect_async(url, timeout=30) as client:
            models = {m.name for m in await client.list_models()}
            info = await client.get_model("vae-tiny@1")
            result = await client.sample("vae-tiny", n=3, seed=11)
            latents = await client.encode("vae-tiny", result.images)
            rebuilt = await client.reconstruct("vae-tiny", result.images)
            scores = await client.log_prob("vae-tiny", result.images)
            frames = await client.interpolate("vae-tiny", 1, 2, frames=4)
            return models, info, result, latents, rebuilt, scores, frames

    models, info, result, latents, rebuilt, scores, frames = asyncio.run(main())
    assert {"vae-tiny", "ae-tiny"} <= models and info.version == "1"
    assert result.seed == 11
    np.testing.assert_array_equal(_pixels(result.images), _pixels(expected.images))
    np.testing.assert_allclose(latents, expected_latents, rtol=1e-5, atol=1e-6)
    assert len(rebuilt) == 3 and len(scores.bits_per_dim) == 3
    assert all(b > 0 for b in scores.bits_per_dim)
    assert len(frames.images) == 4 and (frames.seed_a, frames.seed_b) == (1, 2)


def test_one_async_client_serves_concurrent_calls(url: str) -> None:
    async def main() -> list:
        async with connect_async(url, timeout=60) as client:
            calls = [client.sample("vae-tiny", n=2, seed=seed) for seed in range(8)]
            return await asyncio.gather(*calls)

    results = asyncio.run(main())
    assert [r.seed for r in results] == list(range(8))
    assert all(len(r.images) == 2 for r in results)


def test_async_jobs_submit_watch_and_get(url: str) -> None:
    async def main() -> tuple:
        async with connect_async(url, timeout=30) as client:
            events = [e async for e in client.sample_events("vae-tiny", n=2, seed=4)]
            job = await client.submit_job("vae-tiny", n=1, seed=5)
            watched = [e async for e in client.watch_job(job.job_id)]
            info = await client.get_job(job.job_id)
            return events, watched, info

    events, watched, info = asyncio.run(main())
    assert isinstance(events[-1], Result) and events[-1].result.seed == 4
    assert isinstance(watched[-1], Result) and watched[-1].result.seed == 5
    assert info.state == "done" and len(info.images) == 1


def test_async_errors_are_the_sync_sdk_exceptions(url: str) -> None:
    async def main() -> None:
        async with connect_async(url, timeout=30) as client:
            with pytest.raises(ModelNotFoundError):
                await client.sample("no-such-model")
            with pytest.raises(InvalidArgumentError) as bad:
                await client.sample("vae-tiny", n=100000)
            assert bad.value.field == "n"
            with pytest.raises(UnsupportedError):
                await client.sample("ae-tiny")
            with pytest.raises(JobNotFoundError):
                await client.get_job("0" * 32)

    asyncio.run(main())
