"""Diffusion sampling as jobs: iteration-level batching, reproducibility, cancellation,
queueing, admission, guidance and previews, through the real service, pipeline, engine,
samplers and batcher over a fake denoiser whose exact answer is known."""

from __future__ import annotations

import asyncio
import io
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers.fakes import (
    SIZE,
    FakeDenoiser,
    fake_diffusion_manifest,
    fake_manifest,
    fake_service,
)
from latentserve.server.engine.jobs import Cancelled, Job, JobNotFound
from latentserve.server.engine.service import GenerativeService
from latentserve.server.errors import InvalidArgument, Overloaded
from PIL import Image


def make_service(
    tmp_path: Path, delay_s: float = 0.0, **settings: object
) -> tuple[GenerativeService, FakeDenoiser, FakeDenoiser]:
    # one batch slot: each iteration is one denoiser call, so calls show what shared a step
    settings = {"max_concurrent_batches": 1} | settings
    manifests = [
        fake_diffusion_manifest("fake-ddpm"),
        fake_diffusion_manifest("fake-cddpm", conditional=True),
        fake_manifest("fake-vae"),
    ]
    service, graphs = fake_service(tmp_path, manifests, delay_s, **settings)
    return service, graphs["fake-ddpm@1"]["denoiser"], graphs["fake-cddpm@1"]["denoiser"]


def pixels(pngs: list[bytes]) -> np.ndarray:
    return np.stack([np.asarray(Image.open(io.BytesIO(p)), dtype=np.float64) / 255 for p in pngs])


def metric(service: GenerativeService, name: str, **labels: str) -> float:
    return service.metrics.registry.get_sample_value(name, labels) or 0.0


async def progress_reaches(job: Job, step: int) -> None:
    async for event in job.events():
        if event.kind == "progress" and event.data["step"] >= step:
            return
    raise AssertionError(f"job ended before step {step}")


def test_same_seed_same_images_whatever_shares_the_batch(tmp_path: Path) -> None:
    service, denoiser, _ = make_service(tmp_path)
    params = {"n": 2, "seed": 7, "steps": 12, "sampler": "ddpm"}
    mates = [
        {"n": 3, "seed": 1, "steps": 5, "sampler": "ddim", "eta": 0.5},
        {"n": 1, "seed": 2, "steps": 30, "sampler": "dpmpp_2m"},
        {"n": 2, "seed": 3, "steps": 20, "sampler": "euler_a"},
    ]

    async def main() -> tuple:
        alone = await service.sample("fake-ddpm", params, "test")
        calls_alone = len(denoiser.batch_sizes)
        together = await asyncio.gather(
            *(service.sample("fake-ddpm", p, "test") for p in (params, *mates))
        )
        return alone, calls_alone, together

    alone, calls_alone, together = asyncio.run(main())
    assert calls_alone == 12  # one denoiser call per step
    assert together[0].images == alone.images
    # All four jobs shared calls: rows of jobs at different timesteps in one batch.
    shared = denoiser.timesteps[calls_alone:]
    assert max(len(t) for t in shared) == 8
    assert any(len(set(t.tolist())) > 1 for t in shared)
    assert len(shared) == 30  # as many iterations as the longest job has steps


def test_samples_follow_the_data_the_denoiser_was_trained_on(tmp_path: Path) -> None:
    # FakeDenoiser's data is N(0, 0.3^2) per pixel in [-1, 1]: pixels ~ N(0.5, 0.15^2).
    service, _, _ = make_service(tmp_path)
    # Enough steps that discretisation error is small (the samplers' own contract test
    # measures it against step count).
    runs = (("ddim", 100), ("dpmpp_2m", 50), ("ddpm", 1000), ("euler_a", 1000))

    async def main() -> list:
        return [
            await service.sample("fake-ddpm", {"n": 16, "seed": 0, "steps": k, "sampler": s}, "t")
            for s, k in runs
        ]

    for (sampler, _), result in zip(runs, asyncio.run(main()), strict=True):
        images = pixels(result.images)
        assert images.shape == (16, SIZE, SIZE)
        assert abs(images.mean() - 0.5) < 0.02, sampler
        assert 0.135 < images.std() < 0.165, sampler


def test_a_job_arriving_mid_sampling_joins_the_next_step(tmp_path: Path) -> None:
    service, denoiser, _ = make_service(tmp_path, delay_s=0.01)

    async def main() -> tuple[int, int, int]:
        long = await service.submit_job("fake-ddpm", "sample", {"n": 1, "steps": 60}, "test")
        await progress_reaches(long, 3)
        joined_at = len(denoiser.batch_sizes)
        short = await service.submit_job("fake-ddpm", "sample", {"n": 2, "steps": 4}, "test")
        await short.wait()
        long_step_when_short_done = long.step
        await long.wait()
        return joined_at, long_step_when_short_done, len(denoiser.batch_sizes)

    joined_at, long_step, calls = asyncio.run(main())
    after = denoiser.batch_sizes[joined_at:]
    assert after.count(3) == 4  # the short job's four steps each rode with the long job
    assert long_step < 60  # and it left as soon as it was done
    assert calls == 60  # no extra calls: the short job never ran on its own


def test_a_cancelled_job_costs_at_most_one_more_step(tmp_path: Path) -> None:
    service, _, _ = make_service(tmp_path, delay_s=0.01)

    async def main() -> Job:
        job = await service.submit_job("fake-ddpm", "sample", {"n": 1, "steps": 100}, "test")
        await progress_reaches(job, 5)
        await service.cancel_job(job.id)
        with pytest.raises(Cancelled):
            await job.wait()
        return job

    job = asyncio.run(main())
    assert job.state.value == "cancelled"
    assert metric(service, "latentserve_job_steps_total", model="fake-ddpm@1") <= 6
    assert (
        metric(
            service,
            "latentserve_jobs_total",
            model="fake-ddpm@1",
            method="sample",
            state="cancelled",
        )
        == 1
    )


def test_jobs_beyond_the_running_limit_queue_in_order(tmp_path: Path) -> None:
    service, _, _ = make_service(tmp_path, max_running_jobs=1)

    async def main() -> tuple[list[int], list[str]]:
        jobs = [
            await service.submit_job("fake-ddpm", "sample", {"n": 1, "steps": 3}, "test")
            for _ in range(3)
        ]
        positions: list[int] = []
        order: list[str] = []

        async def follow(job: Job) -> None:
            async for event in job.events():
                if event.kind == "queued" and job is jobs[2]:
                    positions.append(event.data["position"])
                if event.kind == "result":
                    order.append(job.id)

        await asyncio.gather(*(follow(job) for job in jobs))
        return positions, [next(i for i, j in enumerate(jobs) if j.id == o) for o in order]

    positions, order = asyncio.run(main())
    assert positions == [2, 1, 0]
    assert order == [0, 1, 2]


@pytest.mark.parametrize(("batching", "shared"), [("iteration", True), ("request", False)])
def test_request_level_batching_makes_a_later_job_wait(
    tmp_path: Path, batching: str, shared: bool
) -> None:
    service, denoiser, _ = make_service(tmp_path, delay_s=0.01, step_batching=batching)

    async def main() -> None:
        first = await service.submit_job("fake-ddpm", "sample", {"n": 1, "steps": 20}, "test")
        await progress_reaches(first, 2)
        second = await service.submit_job("fake-ddpm", "sample", {"n": 1, "steps": 3}, "test")
        await asyncio.gather(first.wait(), second.wait())

    asyncio.run(main())
    assert (2 in denoiser.batch_sizes) is shared


def test_admission_refuses_past_max_jobs_and_admitted_jobs_finish(tmp_path: Path) -> None:
    service, denoiser, _ = make_service(tmp_path, max_jobs=2)
    denoiser.gate = threading.Event()  # hold the first step until both are admitted

    async def main() -> list:
        jobs = [
            await service.submit_job("fake-ddpm", "sample", {"n": 1, "steps": 2}, "test")
            for _ in range(2)
        ]
        with pytest.raises(Overloaded):
            await service.submit_job("fake-ddpm", "sample", {"n": 1}, "test")
        denoiser.gate.set()
        return await asyncio.gather(*(job.wait() for job in jobs))

    results = asyncio.run(main())
    assert [len(r["images"]) for r in results] == [1, 1]
    assert (
        metric(
            service, "latentserve_jobs_total", model="fake-ddpm@1", method="sample", state="refused"
        )
        == 1
    )


@pytest.mark.parametrize(
    ("model", "params", "field", "message"),
    [
        ("fake-ddpm", {"temperature": 0.5}, "temperature", "not a sample parameter"),
        ("fake-vae", {"steps": 10}, "steps", "not a sample parameter"),
        ("fake-ddpm", {"n": "2"}, "n", "valid integer"),
        ("fake-ddpm", {"steps": 0}, "steps", "between 1 and 1000"),
        ("fake-ddpm", {"steps": 1001}, "steps", "between 1 and 1000"),
        ("fake-ddpm", {"sampler": "heun"}, "sampler", "known: ddim, ddpm"),
        ("fake-ddpm", {"sampler": "ddpm", "eta": 0.5}, "eta", "no eta"),
        ("fake-ddpm", {"sampler": "ddim", "eta": 2.0}, "eta", "[0, 1]"),
        ("fake-ddpm", {"class_label": 1}, "class_label", "not class-conditional"),
        ("fake-cddpm", {"class_label": 4}, "class_label", "between 0 and 3"),
        ("fake-cddpm", {"class_label": 1, "guidance_scale": 31.0}, "guidance_scale", "0 and 30"),
        ("fake-ddpm", {"preview_every": -1}, "preview_every", ">= 0"),
    ],
)
def test_parameters_are_checked_by_the_models_kind(
    tmp_path: Path, model: str, params: dict, field: str, message: str
) -> None:
    service, _, _ = make_service(tmp_path)
    with pytest.raises(InvalidArgument, match=message) as err:
        asyncio.run(service.sample(model, params, "test"))
    assert err.value.field == field


def test_guidance_runs_both_halves_in_one_call(tmp_path: Path) -> None:
    service, _, denoiser = make_service(tmp_path)

    async def labels_seen(params: dict) -> tuple[set, np.ndarray]:
        denoiser.labels.clear()
        result = await service.sample("fake-cddpm", {"n": 8, "seed": 1, **params}, "test")
        return {tuple(labels.tolist()) for labels in denoiser.labels}, pixels(result.images)

    async def main() -> list:
        return [
            await labels_seen(params)
            for params in (
                {"class_label": 2, "guidance_scale": 3.0, "steps": 20},
                {"class_label": 2, "guidance_scale": 1.0, "steps": 20},
                {"steps": 5},
            )
        ]

    (guided, guided_images), (plain, plain_images), (unconditional, _) = asyncio.run(main())
    assert guided == {(2,) * 8 + (4,) * 8}  # conditional rows, then the null label's
    assert plain == {(2,) * 8}
    # FakeDenoiser's class 2 has mean 0.2 in [-1, 1]: pixels around 0.6.
    assert abs(plain_images.mean() - 0.6) < 0.02
    # Guidance pushes away from the unconditional mean (0 -> pixel 0.5).
    assert guided_images.mean() > plain_images.mean() + 0.05
    assert unconditional == {(4,) * 8}


def test_previews_come_every_k_steps_before_the_result(tmp_path: Path) -> None:
    service, _, _ = make_service(tmp_path)

    async def main() -> list:
        job = await service.submit_job(
            "fake-ddpm", "sample", {"n": 2, "steps": 6, "preview_every": 2}, "test"
        )
        return [event async for event in job.events()]

    events = asyncio.run(main())
    kinds = [e.kind for e in events]
    assert kinds[0] == "accepted" and kinds[-1] == "result"
    assert [e.data["step"] for e in events if e.kind == "progress"] == [1, 2, 3, 4, 5, 6]
    previews = [e for e in events if e.kind == "preview"]
    assert [p.data["step"] for p in previews] == [2, 4]
    assert pixels(previews[0].data["images"]).shape == (2, SIZE, SIZE)


def test_finished_jobs_are_kept_up_to_a_bound(tmp_path: Path) -> None:
    service, _, _ = make_service(tmp_path, max_finished_jobs=1)

    async def main() -> tuple[Job, Job]:
        jobs = []
        for _ in range(2):
            job = await service.submit_job("fake-ddpm", "sample", {"n": 1, "steps": 2}, "test")
            await job.wait()
            jobs.append(job)
        return jobs[0], jobs[1]

    first, second = asyncio.run(main())
    with pytest.raises(JobNotFound):
        asyncio.run(service.get_job(first.id))
    kept = asyncio.run(service.get_job(second.id))
    assert kept.state.value == "done" and len(kept.result["images"]) == 1


def test_an_iteration_is_split_evenly_across_the_batch_slots(tmp_path: Path) -> None:
    service, denoiser, _ = make_service(tmp_path, max_concurrent_batches=2)

    async def main() -> None:
        params = {"n": 3, "steps": 4, "sampler": "ddim"}
        await asyncio.gather(*(service.sample("fake-ddpm", params, "test") for _ in range(3)))

    asyncio.run(main())
    assert sorted(set(denoiser.batch_sizes)) == [4, 5]  # 9 rows per step: 5 + 4, not 9 + 0
