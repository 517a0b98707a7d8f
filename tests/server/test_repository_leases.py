"""Leases on model versions: a removed version stops resolving at once and is unloaded
only when the last request or job using it is done."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from helpers.fakes import sample_params
from helpers.fakes import vae_service as make_service
from latentserve.server.errors import ModelNotFound, Unavailable
from latentserve.server.repository.store import ModelRepository


def state(repository: ModelRepository, label: str) -> str | None:
    """The version's ``latentserve_model_versions`` state, None once it is unloaded."""
    registry = repository._metrics.registry
    for value in ("serving", "draining"):
        labels = {"model": label, "state": value}
        if registry.get_sample_value("latentserve_model_versions", labels) == 1:
            return value
    return None


async def settle() -> None:
    """Let the tasks and callbacks already scheduled run (no waiting on time)."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_removed_version_serves_its_lease_holders_then_unloads(tmp_path: Path) -> None:
    service, _ = make_service(tmp_path)
    repository = service._repository

    async def main() -> None:
        lease = repository.lease("fake-vae@1")
        pipeline = lease.model.pipeline
        params = pipeline.prepare(sample_params(2, 0))
        repository.remove("fake-vae", "1")
        with pytest.raises(ModelNotFound):
            repository.resolve("fake-vae@1")
        assert repository.resolve("fake-vae").label == "fake-vae@2"
        assert state(repository, "fake-vae@1") == "draining"
        assert (await pipeline.sample(params)).shape[0] == 2  # still served to its holder
        lease.release()
        assert state(repository, "fake-vae@1") is None
        await asyncio.gather(*repository._unloading)
        with pytest.raises(Unavailable):  # its batchers are closed: it is unloaded
            await pipeline.sample(params)
        await service.close()

    asyncio.run(main())


def test_a_job_holds_its_version_until_it_finishes(tmp_path: Path) -> None:
    service, graphs = make_service(tmp_path, delay_s=0.2)
    repository = service._repository

    async def main() -> None:
        job = await service.submit_job("fake-vae@2", "sample", sample_params(1, 0), "rest")
        repository.remove("fake-vae", "2")  # the job's request returned; the job goes on
        assert state(repository, "fake-vae@2") == "draining"
        result = await job.wait()
        assert result["model"] == "fake-vae@2" and len(result["images"]) == 1
        await settle()
        assert state(repository, "fake-vae@2") is None
        await service.close()

    asyncio.run(main())
    assert graphs["fake-vae@2"]["sampler"].batch_sizes == [1]


def test_a_version_nobody_uses_unloads_when_removed(tmp_path: Path) -> None:
    service, _ = make_service(tmp_path)
    repository = service._repository

    async def main() -> None:
        await service.sample("fake-vae@1", sample_params(1, 0), "rest")
        await settle()  # the job's task ends just after its answer: its lease goes with it
        repository.remove("fake-vae", "1")
        assert state(repository, "fake-vae@1") is None
        registry = repository._metrics.registry
        assert registry.get_sample_value("latentserve_models_loaded") == 2
        await service.close()

    asyncio.run(main())
