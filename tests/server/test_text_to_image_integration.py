"""Text-to-image served end to end: a real server (torch blocked) over an exported tiny
latent diffusion model with its MiniLM text encoder, driven over real HTTP (JSON and
Server-Sent Events) and real gRPC (unary and event streams)."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from helpers.server_process import ServerFactory, ServerProcess, metric, sse
from latentserve.server.codecs import encode_png
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow

MODEL = "ldm-tiny"
ROUTE = f"/v1/models/{MODEL}/text-to-image"
SSE = {"Accept": "text/event-stream"}


@pytest.fixture(scope="module")
def server(text_repository: Path, start_server: ServerFactory) -> Iterator:
    with start_server(text_repository, "text_to_image", config="") as process:
        yield process


def digit_png(size: int = 28) -> bytes:
    """A bright bar on black: something to encode and to start img2img from."""
    pixels = np.zeros((size, size, 1), dtype=np.uint8)
    pixels[4:24, 12:16] = 255
    return encode_png(pixels)


def b64(images: list[bytes]) -> list[str]:
    return [base64.b64encode(i).decode() for i in images]


def test_the_model_describes_itself(http: httpx.Client) -> None:
    info = http.get(f"/v1/models/{MODEL}").json()
    assert info["family"] == "ldm" and info["pipeline"] == "diffusion"
    assert info["capabilities"] == ["text_to_image", "encode", "reconstruct"]


def test_same_seed_same_images_over_both_transports_and_both_styles(
    http: httpx.Client, stub: pb_grpc.GenerativeServiceStub
) -> None:
    body = {"prompt": "a handwritten 3", "n": 2, "seed": 7, "steps": 5, "guidance_scale": 3.0}
    unary = http.post(ROUTE, json=body).json()
    assert len(unary["images"]) == 2 and unary["seed"] == 7
    with http.stream("POST", ROUTE, json=body, headers=SSE) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(sse(response))
    assert [d["step"] for n, d in events if n == "progress"] == [1, 2, 3, 4, 5]
    assert events[-1][0] == "result" and events[-1][1]["images"] == unary["images"]

    request = pb.TextToImageRequest(model=MODEL, **body)
    assert b64(stub.TextToImage(request, timeout=60).images) == unary["images"]
    stream = list(stub.TextToImageEvents(request, timeout=60))
    assert stream[-1].WhichOneof("event") == "result"
    assert b64(stream[-1].result.images) == unary["images"]

    other = http.post(ROUTE, json=body | {"prompt": "the digit seven"}).json()
    assert other["images"] != unary["images"]


def test_identical_prompts_hit_the_embedding_cache(http: httpx.Client) -> None:
    hits = metric(http, "latentserve_text_cache_hits_total", model=f"{MODEL}@1")
    body = {"prompt": "a drawing of the number five", "n": 1, "seed": 1, "steps": 2}
    first, second = (http.post(ROUTE, json=body).json() for _ in range(2))
    assert first["images"] == second["images"]
    # the second call finds both its prompt and the empty negative prompt
    assert metric(http, "latentserve_text_cache_hits_total", model=f"{MODEL}@1") >= hits + 2


def test_each_stage_of_a_job_is_timed(http: httpx.Client) -> None:
    stages = ("text_encode", "image_encode", "denoise", "decode")
    name = "latentserve_job_stage_seconds"

    def totals() -> dict[str, tuple[float, float]]:
        return {
            stage: tuple(
                metric(http, f"{name}_{part}", model=f"{MODEL}@1", stage=stage)
                for part in ("count", "sum")
            )
            for stage in stages
        }

    before = totals()
    image = base64.b64encode(digit_png()).decode()
    body = {"prompt": "the digit two", "seed": 4, "steps": 4, "image": image, "strength": 0.5}
    assert http.post(ROUTE, json=body).status_code == 200
    after = totals()
    for stage in stages:
        assert after[stage][0] == before[stage][0] + 1, stage
        assert after[stage][1] > before[stage][1], stage


@pytest.mark.parametrize("strength", [0.3, 1.0])
def test_img2img_runs_strength_of_the_steps(
    http: httpx.Client, stub: pb_grpc.GenerativeServiceStub, strength: float
) -> None:
    image = digit_png()
    body = {"prompt": "a 1", "seed": 3, "steps": 10, "strength": strength}
    json_body = body | {"image": base64.b64encode(image).decode()}
    with http.stream("POST", ROUTE, json=json_body, headers=SSE) as response:
        events = list(sse(response))
    expected = math.ceil(strength * 10)
    progress = [d for n, d in events if n == "progress"]
    assert [d["step"] for d in progress] == list(range(1, expected + 1))
    assert {d["steps"] for d in progress} == {expected}
    request = pb.TextToImageRequest(model=MODEL, image=image, **body)
    assert b64(stub.TextToImage(request, timeout=60).images) == events[-1][1]["images"]


def test_text_to_image_jobs_start_from_an_image_over_both_transports(
    http: httpx.Client, stub: pb_grpc.GenerativeServiceStub
) -> None:
    image = digit_png()
    params = {"prompt": "a 1", "seed": 5, "steps": 10, "strength": 0.3}
    direct = http.post(ROUTE, json=params | {"image": base64.b64encode(image).decode()})
    assert direct.status_code == 200, direct.text
    job = {"model": MODEL, "method": "text_to_image"}
    job["params"] = params | {"image": base64.b64encode(image).decode()}
    submitted = http.post("/v1/jobs", json=job)
    assert submitted.status_code == 202, submitted.text
    info = submitted.json()
    assert "image" not in info["params"]  # input images are not echoed back
    with http.stream("GET", f"/v1/jobs/{info['job_id']}/events") as response:
        events = list(sse(response))
    progress = [d for n, d in events if n == "progress"]  # a late watcher sees the latest
    assert progress[-1] == {"step": 3, "steps": 3}  # strength 0.3 of 10 steps
    assert events[-1] == ("result", events[-1][1])
    assert events[-1][1]["images"] == direct.json()["images"]
    request = pb.TextToImageRequest(model=MODEL, image=image, **params)
    over_grpc = stub.SubmitJob(pb.JobRequest(text_to_image=request), timeout=60)
    watched = list(stub.WatchJob(pb.JobRef(job_id=over_grpc.job_id), timeout=60))
    assert watched[-1].WhichOneof("event") == "result"
    assert b64(watched[-1].result.images) == direct.json()["images"]


def test_encode_and_reconstruct(http: httpx.Client, stub: pb_grpc.GenerativeServiceStub) -> None:
    images = [base64.b64encode(digit_png()).decode()]
    encoded = http.post(f"/v1/models/{MODEL}/encode", json={"images": images}).json()
    assert np.asarray(encoded["latents"]).shape == (1, 4, 7, 7)
    rebuilt = http.post(f"/v1/models/{MODEL}/reconstruct", json={"images": images}).json()
    via_grpc = stub.Reconstruct(pb.ReconstructRequest(model=MODEL, images=[digit_png()]))
    assert b64(via_grpc.images) == rebuilt["images"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"prompt": "seven " * 20}, "prompt"),
        ({"prompt": "a 7", "strength": 0.5}, "strength"),
        ({"prompt": "a 7", "image": digit_png(8)}, "image"),
        ({"prompt": "a 7", "temperature": 0.5}, "temperature"),
    ],
)
def test_refusals_name_the_field(
    http: httpx.Client, stub: pb_grpc.GenerativeServiceStub, params: dict, field: str
) -> None:
    body = {
        k: base64.b64encode(v).decode() if isinstance(v, bytes) else v for k, v in params.items()
    }
    response = http.post(ROUTE, json=body | {"steps": 2})
    assert response.status_code == 422 and response.json()["error"]["field"] == field
    if field == "temperature":  # not a field of the gRPC request at all
        return
    with pytest.raises(grpc.RpcError) as err:
        stub.TextToImage(pb.TextToImageRequest(model=MODEL, steps=2, **params), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(err.value.trailing_metadata())["field"] == field


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_the_cli_draws_a_prompt_and_the_sdk_agrees(
    server: ServerProcess, tmp_path: Path, scheme: str
) -> None:
    from latentserve.clients import connect
    from PIL import Image

    from latentserve.cli import main

    url = server.http_url if scheme == "http" else server.grpc_url
    out = tmp_path / "grid.png"
    argv = ["sample", "--url", url, "--model", "ldm-tiny", "--prompt", "a 3", "-n", "2"]
    assert main([*argv, "--seed", "5", "--steps", "4", "--out", str(out)]) == 0
    with connect(url) as client:
        result = client.text_to_image("ldm-tiny", "a 3", n=2, seed=5, steps=4)
    grid = np.asarray(Image.open(out))
    assert grid.shape[0] >= 28 and len(result.images) == 2
    first = np.asarray(result.images[0])
    assert any(
        np.array_equal(grid[y : y + 28, x : x + 28], first)
        for y in range(grid.shape[0] - 27)
        for x in range(grid.shape[1] - 27)
    )


SHAPES = "ldm-shapes-tiny"


def scene_png() -> bytes:
    """A red square on the dark background of a 32x32 RGB shapes scene."""
    pixels = np.full((32, 32, 3), 20, dtype=np.uint8)
    pixels[10:22, 4:16] = (230, 40, 40)
    return encode_png(pixels)


def decoded(images: list[str]) -> list[np.ndarray]:
    from PIL import Image

    return [np.asarray(Image.open(BytesIO(base64.b64decode(i)))) for i in images]


def test_rgb_scenes_from_prompts_and_images_over_both_transports(
    http: httpx.Client, stub: pb_grpc.GenerativeServiceStub
) -> None:
    route = f"/v1/models/{SHAPES}/text-to-image"
    body = {"prompt": "a small red square on the left", "n": 2, "seed": 3, "steps": 3}
    unary = http.post(route, json=body).json()
    assert [image.shape for image in decoded(unary["images"])] == [(32, 32, 3)] * 2
    request = pb.TextToImageRequest(model=SHAPES, **body)
    assert b64(stub.TextToImage(request, timeout=60).images) == unary["images"]

    start = {"image": base64.b64encode(scene_png()).decode(), "strength": 0.5}
    img2img = http.post(route, json=body | start)
    assert img2img.status_code == 200 and img2img.json()["images"] != unary["images"]
    wrong = http.post(route, json=body | start | {"image": b64([digit_png()])[0]})
    assert wrong.status_code == 422 and wrong.json()["error"]["field"] == "image"


def test_eval_samples_scores_shapes_prompts_drawn_from_the_server(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from latentserve.training.quality.scenes import (
        SceneClassifierConfig,
        load_or_train_scene_classifier,
    )

    from latentserve.cli import main

    classifier_dir = tmp_path / "classifier"
    load_or_train_scene_classifier(classifier_dir, SceneClassifierConfig(epochs=1, train_limit=500))
    table = tmp_path / "shapes.md"
    argv = ["eval-samples", "--dataset", "shapes", "--captions", "heldout", "-n", "6"]
    argv += ["--url", server.grpc_url, "--model", SHAPES, "--param", "steps=2"]
    argv += ["--classifier-dir", str(classifier_dir), "--table", str(table), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert (
        report["n"] == 6 and report["split"] == "heldout" and report["params"] == "steps=2 seed=0"
    )
    assert 0 <= report["prompt_accuracy"] <= 1 and 0 <= report["object_accuracy"] <= 1
    assert report["fid"] > 0 and report["reference_n"] == 1000
    rows = table.read_text().splitlines()
    assert rows[0].startswith("| model |") and rows[2].startswith(
        f"| {SHAPES} | steps=2 seed=0 | heldout | 6 |"
    )


def shared_iterations(http: httpx.Client, model: str) -> float:
    """Denoiser iterations so far that stepped more than one job."""
    name = "latentserve_step_batch_jobs"
    alone = metric(http, f"{name}_bucket", model=f"{model}@1", le="1.0")
    return metric(http, f"{name}_count", model=f"{model}@1") - alone


def mask_keeping_the_left_half(size: int) -> bytes:
    """An OpenAI-style mask: opaque (kept) on the left, transparent (repainted) on the right."""
    alpha = np.zeros((size, size), dtype=np.uint8)
    alpha[:, : size // 2] = 255
    return encode_png(np.stack([np.zeros_like(alpha), alpha], axis=-1))


# ldm-shapes-tiny draws unsaturated RGB: a change of 1e-4 in its step outputs moves a pixel
# by a level, where ldm-tiny's near-binary digits hide it.
@pytest.mark.parametrize(("model", "size"), [(MODEL, 28), (SHAPES, 32)])
def test_same_seed_same_images_whatever_shares_the_batch(
    server: ServerProcess, model: str, size: int
) -> None:
    """A text-to-image job gives the same bytes alone and stepped, encoded and decoded with
    other jobs (other prompts, step counts and guidance; inpainting), over the native and the
    OpenAI routes."""
    import openai

    route = f"/v1/models/{model}/text-to-image"
    image = digit_png() if size == 28 else scene_png()
    mask = mask_keeping_the_left_half(size)
    body = {"prompt": "a handwritten 3", "n": 2, "seed": 7, "steps": 8, "guidance_scale": 3.0}
    mates = [
        {"prompt": "the digit seven", "n": 3, "seed": 1, "steps": 12, "guidance_scale": 2.0},
        {"prompt": "a 1", "n": 1, "seed": 2, "steps": 5, "guidance_scale": 1.0},
        {"prompt": "a 4", "seed": 3, "steps": 10, "image": b64([image])[0]}
        | {"mask": b64([mask])[0], "strength": 1.0},
    ]
    own = {k: body[k] for k in ("seed", "steps", "guidance_scale")}
    with (
        httpx.Client(base_url=server.http_url, timeout=120) as http,
        openai.OpenAI(base_url=f"{server.http_url}/v1", api_key="none", max_retries=0) as client,
    ):

        def generate() -> list[str | None]:
            result = client.images.generate(
                model=model, prompt=body["prompt"], n=2, size=f"{size}x{size}", extra_body=own
            )
            assert result.data is not None
            return [item.b64_json for item in result.data]

        def native(request: dict) -> list[str]:
            response = http.post(route, json=request)
            assert response.status_code == 200, response.text
            return response.json()["images"]

        def inpaint() -> list[str | None]:  # over the OpenAI route, as its own job
            result = client.images.edit(
                model=model,
                image=("image.png", image, "image/png"),
                mask=("mask.png", mask, "image/png"),
                prompt="a 9",
                extra_body={"seed": 4, "steps": 6},
            )
            assert result.data is not None
            return [item.b64_json for item in result.data]

        alone = native(body)
        assert generate() == alone
        shared = shared_iterations(http, model)
        with ThreadPoolExecutor(7) as pool:
            mates_done = [pool.submit(native, mate) for mate in mates] + [pool.submit(inpaint)]
            together = [pool.submit(native, body), pool.submit(generate)]
            for future in mates_done:
                future.result()
            assert [future.result() for future in together] == [alone, alone]
        assert shared_iterations(http, model) > shared  # the jobs did step together
