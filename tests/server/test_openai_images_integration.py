"""The OpenAI Images API served end to end: a real server (torch blocked) over the exported
tiny latent text-to-image model, driven by the real ``openai`` SDK (``OpenAI`` and
``AsyncOpenAI`` with ``base_url``) and checked against latentserve's own REST routes."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from helpers.server_process import ServerFactory, ServerProcess, metric, sse, until
from latentserve.server.codecs import encode_png
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc
from PIL import Image

pytestmark = pytest.mark.slow

MODEL = "ldm-tiny"
SIZE = 28
NATIVE = f"/v1/models/{MODEL}/text-to-image"
# One finished job is retained: a second one pushes the first out, so its image URLs expire.
CONFIG = "max_finished_jobs = 1\n"


@pytest.fixture(scope="module")
def server(text_repository: Path, start_server: ServerFactory) -> Iterator:
    with start_server(text_repository, "openai", CONFIG) as process:
        yield process


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.http_url}/v1", api_key="none", max_retries=0) as c:
        yield c


def cancelled(http: httpx.Client) -> float:
    return metric(http, "latentserve_jobs_total", model=f"{MODEL}@1", state="cancelled")


def two_bars() -> np.ndarray:
    """A bright bar in each half of a black 28x28 image (uint8 H, W)."""
    pixels = np.zeros((SIZE, SIZE), dtype=np.uint8)
    pixels[4:24, 4:10] = 255
    pixels[4:24, 18:24] = 255
    return pixels


def png(pixels: np.ndarray) -> bytes:
    return encode_png(pixels if pixels.ndim == 3 else pixels[:, :, None])


def mask_keeping(keep: np.ndarray) -> bytes:
    """An OpenAI-style mask: opaque where kept, transparent (alpha 0) where repainted."""
    alpha = np.where(keep, 255, 0).astype(np.uint8)
    return encode_png(np.stack([np.zeros_like(alpha), alpha], axis=-1))


def decoded(b64_json: str | None) -> np.ndarray:
    assert b64_json is not None
    image = Image.open(io.BytesIO(base64.b64decode(b64_json)))
    assert image.format == "PNG" and image.size == (SIZE, SIZE)
    return np.asarray(image, dtype=np.float64) / 255


def b64s(result: openai.types.ImagesResponse) -> list[str | None]:
    assert result.data is not None
    return [item.b64_json for item in result.data]


def native(http: httpx.Client, **body: object) -> list[str]:
    """The same generation through latentserve's own REST route (base64 PNGs)."""
    for key in ("image", "mask"):
        if isinstance(body.get(key), bytes):
            body[key] = base64.b64encode(body[key]).decode()  # type: ignore[arg-type]
    response = http.post(NATIVE, json=body)
    assert response.status_code == 200, response.text
    return response.json()["images"]


def test_generate_b64_json_is_what_the_native_route_makes(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    own = {"seed": 7, "steps": 4, "guidance_scale": 3.0}
    result = client.images.generate(
        model=MODEL,
        prompt="a handwritten 3",
        n=2,
        size="28x28",
        response_format="b64_json",
        user="test-suite",
        extra_body=own,
    )
    assert isinstance(result, openai.types.ImagesResponse) and result.created > 0
    assert result.data is not None and len(result.data) == 2
    images = [item.b64_json for item in result.data]
    assert images == native(http, prompt="a handwritten 3", n=2, **own)
    assert [decoded(i).shape for i in images] == [(SIZE, SIZE)] * 2


def test_url_serves_the_png_while_the_job_is_retained(
    client: openai.OpenAI, http: httpx.Client, server: ServerProcess
) -> None:
    own = {"seed": 11, "steps": 3}
    result = client.images.generate(
        model=MODEL, prompt="a 5", n=2, response_format="url", extra_body=own
    )
    assert result.data is not None and len(result.data) == 2
    urls = [item.url for item in result.data]
    assert all(url and url.startswith(f"{server.http_url}/v1/jobs/") for url in urls)
    fetched = [httpx.get(str(url)) for url in urls]
    assert [r.headers["content-type"] for r in fetched] == ["image/png"] * 2
    expected = native(http, prompt="a 5", n=2, **own)
    assert [base64.b64encode(r.content).decode() for r in fetched] == expected

    beyond = httpx.get(str(urls[0]).removesuffix("/0") + "/2")
    assert beyond.status_code == 404 and beyond.json()["error"]["field"] == "index"
    # another retained job pushes this one out (max_finished_jobs = 1): its URLs expire
    client.images.generate(model=MODEL, prompt="a 6", response_format="url", extra_body=own)
    gone = httpx.get(str(urls[0]))
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"


def test_stream_sends_partial_images_then_the_completed_ones(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    own = {"seed": 5, "steps": 6}
    stream = client.images.generate(
        model=MODEL, prompt="a 9", stream=True, partial_images=2, extra_body=own
    )
    events = list(stream)
    kinds = [event.type for event in events]
    assert kinds == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    assert [event.partial_image_index for event in events[:2]] == [0, 1]
    assert all(event.size == "28x28" and event.output_format == "png" for event in events)
    assert [events[-1].b64_json] == native(http, prompt="a 9", **own)
    # the partial images are the job's previews: estimates on the way, not the result
    assert events[0].b64_json != events[-1].b64_json
    decoded(events[0].b64_json)


def test_closing_the_stream_cancels_the_job(client: openai.OpenAI, http: httpx.Client) -> None:
    before = cancelled(http)
    stream = client.images.generate(
        model=MODEL, prompt="a 9", stream=True, partial_images=3, extra_body={"steps": 1000}
    )
    first = next(iter(stream))
    assert first.type == "image_generation.partial_image"
    stream.close()
    until(lambda: cancelled(http) == before + 1)


def test_a_job_image_is_there_only_once_the_job_is_done(http: httpx.Client) -> None:
    params = {"prompt": "a 0", "steps": 1000}
    job_id = http.post(
        "/v1/jobs", json={"model": MODEL, "method": "text_to_image", "params": params}
    ).json()["job_id"]
    with http.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        for name, data in sse(response):
            if name == "progress" and data["step"] >= 2:
                break
    running = http.get(f"/v1/jobs/{job_id}/images/0")
    assert running.status_code == 409 and running.json()["error"]["code"] == "not_ready"
    http.delete(f"/v1/jobs/{job_id}")
    with http.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        assert list(sse(response))[-1][0] == "error"
    gone = http.get(f"/v1/jobs/{job_id}/images/0")
    assert gone.status_code == 409 and gone.json()["error"]["code"] == "cancelled"


def test_edit_without_a_mask_is_img2img(client: openai.OpenAI, http: httpx.Client) -> None:
    image = png(two_bars())
    own = {"seed": 3, "steps": 10, "strength": 0.5}
    result = client.images.edit(
        model=MODEL, image=("bars.png", image, "image/png"), prompt="a 1", extra_body=own
    )
    assert result.data is not None and len(result.data) == 1
    assert [result.data[0].b64_json] == native(http, prompt="a 1", image=image, **own)


def test_edit_with_a_mask_keeps_the_opaque_area(
    client: openai.OpenAI, http: httpx.Client, stub: pb_grpc.GenerativeServiceStub
) -> None:
    source = png(two_bars())
    rebuilt = http.post(
        f"/v1/models/{MODEL}/reconstruct", json={"images": [base64.b64encode(source).decode()]}
    ).json()["images"]
    reconstruction = decoded(rebuilt[0])  # the autoencoder's rendering of the image

    def edit(mask: np.ndarray | None, **own: object) -> list[str | None]:
        files = {} if mask is None else {"mask": ("mask.png", mask_keeping(mask), "image/png")}
        result = client.images.edit(
            model=MODEL,
            image=("bars.png", source, "image/png"),
            prompt="a handwritten 8",
            n=4,
            extra_body={"seed": 2, "steps": 10, **own},
            **files,
        )
        assert len(b64s(result)) == 4
        return b64s(result)

    def pixels(images: list[str | None]) -> np.ndarray:
        return np.stack([decoded(image) for image in images])

    def error(images: np.ndarray, region: np.ndarray) -> float:
        return float(np.abs(images[:, region] - reconstruction[region]).mean())

    # all opaque: everything is held, so the image comes back as the autoencoder renders it
    everything = np.ones((SIZE, SIZE), dtype=bool)
    assert np.abs(pixels(edit(everything)) - reconstruction).max() <= 1 / 255
    # the left half (4 of the latent's 7 columns) kept, the right half repainted: the
    # decoder sees the whole latent, so the kept half moves a little, far less than the
    # repainted half and than the same area redrawn without a mask
    keep = np.zeros((SIZE, SIZE), dtype=bool)
    keep[:, :16] = True
    inner = np.zeros_like(keep)
    inner[:, :12] = True  # the kept area away from the mask's edge
    masked, unmasked = edit(keep), edit(None, strength=1.0)
    # latentserve's own routes inpaint the same with the same mask
    same = {"prompt": "a handwritten 8", "n": 4, "seed": 2, "steps": 10}
    assert native(http, image=source, mask=mask_keeping(keep), **same) == masked
    request = pb.TextToImageRequest(model=MODEL, image=source, mask=mask_keeping(keep), **same)
    over_grpc = stub.TextToImage(request, timeout=60).images
    assert [base64.b64encode(image).decode() for image in over_grpc] == masked
    masked, unmasked = pixels(masked), pixels(unmasked)
    kept, repainted, redrawn = error(masked, inner), error(masked, ~keep), error(unmasked, inner)
    print(f"inpainting error: kept {kept:.3f} repainted {repainted:.3f} unmasked {redrawn:.3f}")
    assert kept < 0.1 and kept < 0.8 * repainted and kept < 0.8 * redrawn


def test_the_async_client_gets_the_same_images(
    client: openai.OpenAI, server: ServerProcess
) -> None:
    own = {"seed": 21, "steps": 4}
    image = ("bars.png", png(two_bars()), "image/png")
    redraw = own | {"strength": 0.5}  # from the image noised half way: not a new drawing

    async def main() -> tuple:
        async with openai.AsyncOpenAI(
            base_url=f"{server.http_url}/v1", api_key="none", max_retries=0
        ) as aclient:
            generated = await aclient.images.generate(model=MODEL, prompt="a 4", extra_body=own)
            edited = await aclient.images.edit(
                model=MODEL, image=image, prompt="a 4", extra_body=redraw
            )
            return generated, edited

    generated, edited = asyncio.run(main())
    again = (
        client.images.generate(model=MODEL, prompt="a 4", extra_body=own),
        client.images.edit(model=MODEL, image=image, prompt="a 4", extra_body=redraw),
    )
    assert [b64s(r) for r in (generated, edited)] == [b64s(r) for r in again]
    assert b64s(edited) != b64s(generated)


def test_another_size_is_a_400_naming_size(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.images.generate(model=MODEL, prompt="a 2", size="1024x1024")
    assert err.value.status_code == 400 and err.value.param == "size"
    assert "28x28" in err.value.message


def test_an_unknown_model_is_a_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.images.generate(model="dall-e-3", prompt="a 2")
    assert err.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("call", "param"),
    [
        ({"extra_body": {"steps": 100000}}, "steps"),
        ({"extra_body": {"temperature": 0.5}}, "temperature"),
        ({"n": 0}, "n"),
    ],
)
def test_bad_parameters_name_the_field(client: openai.OpenAI, call: dict, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.images.generate(model=MODEL, prompt="a 2", **call)
    assert err.value.param == param


def test_edit_refusals_name_the_file(client: openai.OpenAI) -> None:
    image = ("bars.png", png(two_bars()), "image/png")
    opaque = ("mask.png", png(two_bars()), "image/png")  # no transparency
    with pytest.raises(openai.BadRequestError) as err:
        client.images.edit(model=MODEL, image=image, mask=opaque, prompt="a 2")
    assert err.value.param == "mask" and "transparen" in err.value.message
    small = ("small.png", png(np.zeros((8, 8), np.uint8)), "image/png")
    with pytest.raises(openai.BadRequestError) as err:
        client.images.edit(model=MODEL, image=small, prompt="a 2")
    assert err.value.param == "image"


def test_errors_take_the_openai_shape_on_these_routes_only(http: httpx.Client) -> None:
    broken = http.post(
        "/v1/images/generations",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert broken.status_code == 400
    assert set(broken.json()["error"]) == {"message", "type", "param", "code"}
    missing = http.post("/v1/images/generations", json={"model": MODEL})
    assert missing.status_code == 400
    assert missing.json()["error"]["param"] == "prompt"
    assert missing.json()["error"]["type"] == "invalid_request_error"
    # the native routes keep their own error body
    native_error = http.post(NATIVE, json={})
    assert native_error.status_code == 422 and native_error.json()["error"]["field"] == "prompt"


def test_models_list_in_both_shapes(client: openai.OpenAI, http: httpx.Client) -> None:
    assert MODEL in [model.id for model in client.models.list()]
    body = http.get("/v1/models").json()
    assert body["object"] == "list" and [m["name"] for m in body["models"]] == [
        m["id"] for m in body["data"]
    ]
