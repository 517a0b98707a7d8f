"""Typed sample parameters, job events and jobs through the SDK, against real servers and
over REST and gRPC alike."""

from __future__ import annotations

import time

import numpy as np
import pytest
from latentserve.clients import (
    Accepted,
    InvalidArgumentError,
    JobCancelledError,
    JobInfo,
    JobNotFoundError,
    ModelNotFoundError,
    Progress,
    Result,
)
from PIL import Image

pytestmark = pytest.mark.slow


def _pixels(images: list[Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(image, dtype=np.int16) for image in images])


def _finished(client, job_id: str, timeout: float = 10.0) -> JobInfo:
    deadline = time.monotonic() + timeout
    while not (info := client.get_job(job_id)).finished and time.monotonic() < deadline:
        time.sleep(0.05)
    return info


def test_parameters_pass_through_by_name(client) -> None:
    default = client.sample("vae-tiny", n=2, seed=4)  # no temperature sent: the model's 1.0
    explicit = client.sample("vae-tiny", n=2, seed=4, temperature=1.0)
    cooler = client.sample("vae-tiny", n=2, seed=4, temperature=0.5)
    np.testing.assert_array_equal(_pixels(default.images), _pixels(explicit.images))
    assert not np.array_equal(_pixels(cooler.images), _pixels(default.images))


@pytest.mark.parametrize("name", ["steps", "bogus"])
def test_a_parameter_the_model_does_not_take_is_refused_by_name(client, name: str) -> None:
    # "steps" is a diffusion parameter (refused by the server on both transports); "bogus"
    # is no parameter at all (refused by the server over REST, by the SDK over gRPC).
    for call in (client.sample, client.sample_events, client.submit_job):
        with pytest.raises(InvalidArgumentError) as caught:
            list(call("vae-tiny", n=1, **{name: 3}))
        assert caught.value.field == name and name in caught.value.message


def test_sample_events_end_with_the_images_of_sample(client) -> None:
    events = list(client.sample_events("vae-tiny", n=3, seed=9, temperature=0.5))
    accepted, result = events[0], events[-1]
    assert isinstance(accepted, Accepted) and isinstance(result, Result)
    assert accepted.model == "vae-tiny@2" and accepted.seed == 9 and accepted.job_id
    assert accepted.params == {"n": 3, "seed": 9, "temperature": 0.5}
    assert result.result.model == "vae-tiny@2" and result.result.seed == 9
    same = client.sample("vae-tiny", n=3, seed=9, temperature=0.5)
    np.testing.assert_array_equal(_pixels(result.result.images), _pixels(same.images))


def test_sample_events_raise_the_servers_errors(client) -> None:
    with pytest.raises(ModelNotFoundError):
        list(client.sample_events("no-such-model"))
    with pytest.raises(InvalidArgumentError) as caught:
        list(client.sample_events("vae-tiny", n=0))
    assert caught.value.field == "n"


def test_a_submitted_job_can_be_watched_and_read_back(client) -> None:
    submitted = client.submit_job("vae-tiny", n=2, seed=5)
    assert submitted.model == "vae-tiny@2" and submitted.method == "sample"
    assert submitted.params == {"n": 2, "seed": 5, "temperature": 1.0}
    events = list(client.watch_job(submitted.job_id))
    assert events[0] == Accepted(submitted.job_id, "vae-tiny@2", 5, submitted.params)
    assert isinstance(events[-1], Result)

    done = client.get_job(submitted.job_id)
    assert done.state == "done" and done.finished and done.seed == 5 and done.error is None
    expected = _pixels(client.sample("vae-tiny", n=2, seed=5).images)
    np.testing.assert_array_equal(_pixels(done.images), expected)
    np.testing.assert_array_equal(_pixels(events[-1].result.images), expected)
    assert client.cancel_job(submitted.job_id).state == "done"  # too late to cancel


def test_unknown_job_ids_raise_job_not_found(client) -> None:
    unknown = "0123456789abcdef" * 2  # of the job-id form: named in the error
    for call in (client.get_job, client.cancel_job, lambda job: list(client.watch_job(job))):
        with pytest.raises(JobNotFoundError, match=unknown):
            call(unknown)
        # Not of the form: refused without being repeated back.
        with pytest.raises(JobNotFoundError, match="32 lowercase hexadecimal") as refused:
            call("no-such-job")
        assert "no-such-job" not in str(refused.value)


def test_an_autoregressive_job_reports_progress(vq_client) -> None:
    events = list(vq_client.sample_events("vqvae-tiny", n=2, seed=1))
    assert isinstance(events[0], Accepted) and isinstance(events[-1], Result)
    progress = [event for event in events if isinstance(event, Progress)]
    steps = progress[-1].steps
    assert steps == 49  # one step per position of the 7x7 code map
    assert [p.step for p in progress] == sorted({p.step for p in progress})
    assert progress[-1].step == steps and all(p.steps == steps for p in progress)
    same = vq_client.sample("vqvae-tiny", n=2, seed=1)
    np.testing.assert_array_equal(_pixels(events[-1].result.images), _pixels(same.images))


def test_closing_the_event_stream_cancels_the_job(vq_client) -> None:
    events = vq_client.sample_events("vqvae-tiny", n=1, seed=2)
    accepted = next(events)
    events.close()
    info = _finished(vq_client, accepted.job_id)
    assert info.state == "cancelled" and isinstance(info.error, JobCancelledError)


def test_a_cancelled_job_fails_its_watchers(vq_client) -> None:
    job = vq_client.submit_job("vqvae-tiny", n=1, seed=3)
    watch = vq_client.watch_job(job.job_id)
    assert isinstance(next(watch), Accepted)
    assert vq_client.cancel_job(job.job_id).job_id == job.job_id
    with pytest.raises(JobCancelledError):
        list(watch)
    info = vq_client.get_job(job.job_id)
    assert info.state == "cancelled" and info.images == []
    assert isinstance(info.error, JobCancelledError) and info.error.code == "cancelled"


def test_a_watch_ending_early_leaves_the_job_running(vq_client) -> None:
    job = vq_client.submit_job("vqvae-tiny", n=1, seed=4)
    watch = vq_client.watch_job(job.job_id)
    next(watch)
    watch.close()
    assert _finished(vq_client, job.job_id).state == "done"
