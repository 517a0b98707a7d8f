"""The real server process over real gRPC: service, streaming, errors, health, reflection."""

from __future__ import annotations

import base64
import io

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from helpers.server_process import ServerProcess, metric, until
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc
from PIL import Image

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> grpc.Channel:
    with grpc.insecure_channel(server.grpc_target) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        yield channel


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> pb_grpc.GenerativeServiceStub:
    return pb_grpc.GenerativeServiceStub(channel)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


GOOD = png(np.zeros((28, 28), np.uint8))


def refused(call, request) -> grpc.RpcError:  # noqa: ANN001 - any unary stub method
    with pytest.raises(grpc.RpcError) as err:
        call(request, timeout=30)
    return err.value


def trailing(error: grpc.RpcError) -> dict[str, str]:
    return dict(error.trailing_metadata() or ())


def test_models_are_listed_and_described(stub: pb_grpc.GenerativeServiceStub) -> None:
    models = stub.ListModels(pb.ListModelsRequest()).models
    assert [(m.name, m.version) for m in models] == [
        ("ae-tiny", "1"),
        ("vae-tiny", "1"),
        ("vae-tiny", "2"),
    ]
    info = stub.GetModel(pb.GetModelRequest(model="vae-tiny"))
    assert (info.version, list(info.versions), info.backend) == ("2", ["1", "2"], "onnxruntime")
    assert list(info.execution_providers) == ["CPUExecutionProvider"]
    assert (info.image.height, info.image.width, info.image.channels) == (28, 28, 1)
    assert list(info.latent_shape) == [4] and info.max_n == 64
    assert stub.GetModel(pb.GetModelRequest(model="vae-tiny@1")).version == "1"


def test_same_seed_same_images_over_grpc_and_rest(
    stub: pb_grpc.GenerativeServiceStub, server: ServerProcess
) -> None:
    reply = stub.Sample(pb.SampleRequest(model="vae-tiny", n=4, seed=123))
    assert (reply.model, reply.seed, len(reply.images)) == ("vae-tiny@2", 123, 4)
    again = stub.Sample(pb.SampleRequest(model="vae-tiny@2", n=4, seed=123, temperature=1.0))
    assert list(again.images) == list(reply.images)
    other = stub.Sample(pb.SampleRequest(model="vae-tiny", n=4, seed=124))
    assert list(other.images) != list(reply.images)
    rest = httpx.post(
        f"{server.http_url}/v1/models/vae-tiny/sample", json={"n": 4, "seed": 123}, timeout=30
    ).json()
    assert [base64.b64decode(i) for i in rest["images"]] == list(reply.images)


def test_an_unset_seed_is_drawn_and_returned(stub: pb_grpc.GenerativeServiceStub) -> None:
    drawn = stub.Sample(pb.SampleRequest(model="vae-tiny", n=1))
    replay = stub.Sample(pb.SampleRequest(model="vae-tiny", n=1, seed=drawn.seed))
    assert list(replay.images) == list(drawn.images)


def sampler_batches(http: httpx.Client) -> tuple[float, float]:
    """(batches run, images in them) by vae-tiny@2's sampler graph so far."""
    labels = {"graph": "sampler", "model": "vae-tiny@2"}
    return (
        metric(http, "latentserve_batch_items_count", **labels),
        metric(http, "latentserve_batch_items_sum", **labels),
    )


def test_stream_sample_arrives_in_chunks_equal_to_unary(
    stub: pb_grpc.GenerativeServiceStub, http: httpx.Client
) -> None:
    request = pb.SampleRequest(model="vae-tiny", n=7, seed=9)
    before = sampler_batches(http)
    chunks = list(stub.StreamSample(request, timeout=30))
    streamed = sampler_batches(http)
    assert [(c.offset, len(c.images)) for c in chunks] == [(0, 2), (2, 2), (4, 2), (6, 1)]
    assert {c.model for c in chunks} == {"vae-tiny@2"} and {c.seed for c in chunks} == {9}
    # each chunk was computed as its own batch (stream_chunk_size = 2), not cut from one
    assert (streamed[0] - before[0], streamed[1] - before[1]) == (4, 7)
    unary = stub.Sample(request)
    after = sampler_batches(http)
    assert (after[0] - streamed[0], after[1] - streamed[1]) == (1, 7)
    assert [image for c in chunks for image in c.images] == list(unary.images)


def test_sample_many_answers_each_request_by_id_as_unary_sample_would(
    stub: pb_grpc.GenerativeServiceStub, http: httpx.Client
) -> None:
    """Many requests over one call: each answer repeats its request's id and carries the
    images a unary Sample gives for the same seed; a refused request is answered with its
    status and the others go on."""
    good = {i: pb.SampleRequest(model="vae-tiny", n=2, seed=100 + i) for i in range(6)}
    bad = {
        10: (pb.SampleRequest(model="vae-tiny", steps=10), grpc.StatusCode.INVALID_ARGUMENT),
        11: (pb.SampleRequest(model="nope", n=1), grpc.StatusCode.NOT_FOUND),
        12: (pb.SampleRequest(model="ae-tiny", n=1), grpc.StatusCode.UNIMPLEMENTED),
    }
    messages = [pb.SampleManyRequest(id=i, request=r) for i, r in good.items()]
    messages[3:3] = [pb.SampleManyRequest(id=i, request=r) for i, (r, _) in bad.items()]
    ok = {"protocol": "grpc", "method": "sample", "model": "vae-tiny@2", "status": "ok"}
    invalid = ok | {"status": "invalid_argument"}
    before = metric(http, "latentserve_requests_total", **ok)
    refusals = metric(http, "latentserve_requests_total", **invalid)
    answers = {a.id: a for a in stub.SampleMany(iter(messages), timeout=30)}
    assert sorted(answers) == sorted([*good, *bad])
    # each request is counted as the sample request it is
    assert metric(http, "latentserve_requests_total", **ok) == before + len(good)
    assert metric(http, "latentserve_requests_total", **invalid) == refusals + 1
    for i, (_, code) in bad.items():
        assert answers[i].WhichOneof("result") == "error"
        assert answers[i].error.code == code.value[0] and answers[i].error.message
    assert answers[10].error.field == "steps" and "steps" in answers[10].error.message
    for i, request in good.items():
        assert answers[i].response.model == "vae-tiny@2" and answers[i].response.seed == 100 + i
        assert list(answers[i].response.images) == list(stub.Sample(request).images)


def test_encode_and_reconstruct_agree_with_rest(
    stub: pb_grpc.GenerativeServiceStub, server: ServerProcess
) -> None:
    images = list(stub.Sample(pb.SampleRequest(model="vae-tiny", n=2, seed=3)).images)
    encoded = stub.Encode(pb.EncodeRequest(model="vae-tiny", images=images))
    assert encoded.model == "vae-tiny@2" and [list(x.shape) for x in encoded.latents] == [[4]] * 2
    rest = httpx.post(
        f"{server.http_url}/v1/models/vae-tiny/encode",
        json={"images": [base64.b64encode(i).decode() for i in images]},
        timeout=30,
    ).json()
    np.testing.assert_allclose(
        [list(x.values) for x in encoded.latents], rest["latents"], rtol=1e-6
    )
    assert [g.name for g in encoded.groups] == ["latent"]
    assert list(encoded.groups[0].latents) == list(encoded.latents)
    rebuilt = stub.Reconstruct(pb.ReconstructRequest(model="ae-tiny", images=images))
    assert len(rebuilt.images) == 2
    assert Image.open(io.BytesIO(rebuilt.images[0])).size == (28, 28)


def test_log_prob_agrees_with_rest(
    stub: pb_grpc.GenerativeServiceStub, server: ServerProcess
) -> None:
    images = list(stub.Sample(pb.SampleRequest(model="vae-tiny", n=2, seed=5)).images)
    request = pb.LogProbRequest(model="vae-tiny", images=images, samples=8, seed=11)
    scored = stub.LogProb(request)
    assert scored.bound == "importance_weighted" and scored.samples == 8 and scored.seed == 11
    rest = httpx.post(
        f"{server.http_url}/v1/models/vae-tiny/log-prob",
        json={"images": [base64.b64encode(i).decode() for i in images], "samples": 8, "seed": 11},
        timeout=30,
    ).json()
    np.testing.assert_allclose(list(scored.bits_per_dim), rest["bits_per_dim"], rtol=1e-6)
    refusal = refused(stub.LogProb, pb.LogProbRequest(model="ae-tiny", images=images))
    assert refusal.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "does not support log_prob" in refusal.details()
    info = stub.GetModel(pb.GetModelRequest(model="vae-tiny"))
    assert info.likelihood == "elbo" and "log_prob" in info.capabilities
    assert info.pipeline == "latent_decoder"
    assert list(info.sample_parameters) == ["n", "seed", "temperature"]
    assert dict(info.sample_defaults) == {"temperature": 1.0}


@pytest.mark.parametrize(
    ("method", "request_", "field"),
    [
        ("Sample", pb.SampleRequest(model="vae-tiny", n=0), "n"),
        ("Sample", pb.SampleRequest(model="vae-tiny", steps=10), "steps"),
        ("Sample", pb.SampleRequest(model="vae-tiny", n=-1), "n"),
        ("Sample", pb.SampleRequest(model="vae-tiny", n=65), "n"),
        ("Sample", pb.SampleRequest(model="vae-tiny", n=1, temperature=-1), "temperature"),
        ("StreamSample", pb.SampleRequest(model="vae-tiny", n=0), "n"),
        ("Encode", pb.EncodeRequest(model="vae-tiny"), "images"),
        ("Encode", pb.EncodeRequest(model="vae-tiny", images=[GOOD, b"junk"]), "images[1]"),
        ("LogProb", pb.LogProbRequest(model="vae-tiny", images=[GOOD], samples=0), "samples"),
        ("SubmitJob", pb.JobRequest(), "method"),  # neither sample nor text_to_image
        (
            "Reconstruct",
            pb.ReconstructRequest(model="vae-tiny", images=[png(np.zeros((28, 20), np.uint8))]),
            "images[0]",
        ),
    ],
)
def test_bad_input_is_invalid_argument_naming_the_field(
    stub: pb_grpc.GenerativeServiceStub, method: str, request_: object, field: str
) -> None:
    call = getattr(stub, method)
    if method == "StreamSample":
        with pytest.raises(grpc.RpcError) as err:
            list(call(request_, timeout=30))
        error = err.value
    else:
        error = refused(call, request_)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert trailing(error)["field"] == field and field in error.details()


def test_unknown_models_are_not_found(stub: pb_grpc.GenerativeServiceStub) -> None:
    for model in ("nope", "vae-tiny@9"):
        error = refused(stub.Sample, pb.SampleRequest(model=model, n=1))
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert refused(stub.GetModel, pb.GetModelRequest(model=model)).code() == (
            grpc.StatusCode.NOT_FOUND
        )


def test_sampling_an_autoencoder_is_refused_clearly(stub: pb_grpc.GenerativeServiceStub) -> None:
    error = refused(stub.Sample, pb.SampleRequest(model="ae-tiny", n=1))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "does not support sample" in error.details()
    with pytest.raises(grpc.RpcError) as streamed:
        list(stub.StreamSample(pb.SampleRequest(model="ae-tiny", n=2), timeout=30))
    assert streamed.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_a_full_queue_is_resource_exhausted(
    stub: pb_grpc.GenerativeServiceStub, http: httpx.Client
) -> None:
    request = pb.EncodeRequest(model="ae-tiny", images=[GOOD])  # 1-request queue, 1.5 s window
    waiting = stub.Encode.future(request, timeout=30)
    until(lambda: metric(http, "latentserve_requests_in_flight", protocol="grpc") >= 1)
    error = refused(stub.Encode, request)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert int(trailing(error)["retry-after"]) >= 1
    assert len(waiting.result().latents) == 1


def test_oversize_messages_are_refused(stub: pb_grpc.GenerativeServiceStub) -> None:
    error = refused(stub.Encode, pb.EncodeRequest(model="vae-tiny", images=[b"x" * 70_000]))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_health_and_reflection(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "latentserve.v1.GenerativeService"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    services = ProtoReflectionDescriptorDatabase(channel).get_services()
    assert "latentserve.v1.GenerativeService" in services
    assert "grpc.health.v1.Health" in services


def test_grpc_requests_are_measured(
    stub: pb_grpc.GenerativeServiceStub, http: httpx.Client
) -> None:
    expected = [
        ({"method": "stream_sample", "model": "vae-tiny@2", "status": "ok"}, 1),
        ({"method": "sample", "model": "ae-tiny@1", "status": "unsupported"}, 1),
        ({"method": "get_model", "model": "unknown", "status": "not_found"}, 2),
    ]
    counts = [
        metric(http, "latentserve_requests_total", protocol="grpc", **labels)
        for labels, _ in expected
    ]
    list(stub.StreamSample(pb.SampleRequest(model="vae-tiny", n=3), timeout=30))
    refused(stub.Sample, pb.SampleRequest(model="ae-tiny", n=1))
    refused(stub.GetModel, pb.GetModelRequest(model="nope"))
    refused(stub.GetModel, pb.GetModelRequest(model="vae-tiny@9"))
    for (labels, more), before in zip(expected, counts, strict=True):
        after = metric(http, "latentserve_requests_total", protocol="grpc", **labels)
        assert after == before + more, labels
    assert metric(http, "latentserve_requests_in_flight", protocol="grpc") == 0


def test_the_server_keeps_serving_after_all_of_that(
    stub: pb_grpc.GenerativeServiceStub, server: ServerProcess
) -> None:
    assert server.process.poll() is None
    assert len(stub.Sample(pb.SampleRequest(model="vae-tiny", n=64, seed=1)).images) == 64


def test_an_unset_n_draws_one_image_as_over_rest(stub: pb_grpc.GenerativeServiceStub) -> None:
    response = stub.Sample(pb.SampleRequest(model="vae-tiny", seed=3), timeout=30)
    assert len(response.images) == 1 and response.seed == 3
