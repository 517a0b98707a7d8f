"""Text-to-image through the real service, pipeline, engine, samplers, prompt encoder and
batcher, over fake graphs: a denoiser whose data mean is 0.1 per word of the prompt its
rows carry, and a latent that is the image rescaled to [-1, 1]."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
import pytest
from helpers.fakes import SIZE
from helpers.text_model import MODEL, make_service
from latentserve.server.codecs import encode_png
from latentserve.server.engine.service import GenerativeService
from latentserve.server.errors import InvalidArgument, Unsupported
from PIL import Image


def pixels(pngs: list[bytes]) -> np.ndarray:
    return np.stack([np.asarray(Image.open(io.BytesIO(p)), dtype=np.float64) / 255 for p in pngs])


def png_of(value: float) -> bytes:
    return encode_png(np.full((SIZE, SIZE, 1), round(value * 255), dtype=np.uint8))


def t2i(service: GenerativeService, **params: object):  # noqa: ANN201 - test helper
    return service.generate(MODEL, "text_to_image", params, "test")


def test_images_follow_the_prompt_and_guidance_uses_the_negative_prompt(tmp_path: Path) -> None:
    service, graphs = make_service(tmp_path)
    common = {"n": 16, "seed": 0, "steps": 100, "sampler": "ddim"}

    async def main() -> list[np.ndarray]:
        runs = [
            t2i(service, prompt="a red circle", **common),  # 3 words: mean 0.3
            t2i(service, prompt="", **common),  # unconditional: mean 0
            t2i(service, prompt="a red circle", guidance_scale=2.0, **common),
            t2i(
                service,
                prompt="a red circle",
                negative_prompt="a big blue square",
                guidance_scale=2.0,
                **common,
            ),
        ]
        return [pixels((await run).images) for run in runs]

    plain, empty, guided, negative = asyncio.run(main())
    # pixel = (x + 1) / 2, so data mean m shows as (m + 1) / 2
    assert abs(plain.mean() - 0.65) < 0.02
    assert abs(empty.mean() - 0.5) < 0.02
    assert abs(guided.mean() - 0.8) < 0.03  # 0 + 2 * (0.3 - 0): mean 0.6
    assert abs(negative.mean() - 0.6) < 0.03  # 0.4 + 2 * (0.3 - 0.4): mean 0.2
    # guided rows ride in one call: 2n rows, the negative prompt's mask in the second half
    words = [(m.sum(axis=1) - 2).tolist() for m in graphs["denoiser"].masks]
    assert [3] * 16 + [4] * 16 in words


def test_same_seed_same_images_whatever_shares_the_batch(tmp_path: Path) -> None:
    service, graphs = make_service(tmp_path)
    params = {"prompt": "the digit seven", "n": 2, "seed": 3, "steps": 12, "guidance_scale": 3.0}

    async def main() -> tuple:
        alone = await t2i(service, **params)
        together = await asyncio.gather(
            t2i(service, **params),
            t2i(service, prompt="a blue square", n=3, seed=1, steps=30, sampler="ddpm"),
            t2i(service, prompt="", n=1, seed=2, steps=5, sampler="dpmpp_2m"),
        )
        return alone, together

    alone, together = asyncio.run(main())
    assert together[0].images == alone.images
    # the first and third jobs' embeddings were cached: they start in the same iteration
    assert max(graphs["denoiser"].batch_sizes) >= 4 + 1


def test_identical_prompts_reuse_their_embeddings(tmp_path: Path) -> None:
    service, graphs = make_service(tmp_path)

    async def main() -> None:
        for _ in range(3):
            await t2i(service, prompt="a red circle", n=1, steps=2)

    asyncio.run(main())
    registry = service.metrics.registry
    labels = {"model": f"{MODEL}@1"}
    # first call: the prompt and the empty negative prompt miss; then both hit
    assert registry.get_sample_value("latentserve_text_cache_misses_total", labels) == 2
    assert registry.get_sample_value("latentserve_text_cache_hits_total", labels) == 4
    assert graphs["text_encoder"].batch_sizes == [2]


def test_img2img_starts_from_the_image_and_runs_strength_of_the_steps(tmp_path: Path) -> None:
    service, _ = make_service(tmp_path)

    async def redraw(strength: float) -> tuple[list[int], np.ndarray]:
        params = {"prompt": "", "image": png_of(0.9), "strength": strength, "steps": 20, "n": 8}
        job = await service.submit_job(MODEL, "text_to_image", params, "test")
        steps = [e.data["steps"] async for e in job.events() if e.kind == "progress"]
        return steps, pixels(job.result["images"])

    async def main() -> list:
        return [await redraw(strength) for strength in (0.1, 0.3, 1.0)]

    (light_steps, light), (steps, middle), (_, full) = asyncio.run(main())
    assert light_steps == [2] * 2 and steps == [6] * 6  # ceil(strength * 20) of the plan
    # the model's data has mean 0 (pixel 0.5): the lighter the redraw, the more of the
    # image (0.9) is kept; a full one forgets it
    assert light.mean() > middle.mean() + 0.05 > full.mean() + 0.1
    assert abs(full.mean() - 0.5) < 0.03


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({}, "prompt", "required"),
        ({"prompt": "a " * 10}, "prompt", "over the limit of 8"),
        ({"prompt": "ok", "negative_prompt": "no " * 10}, "negative_prompt", "over the limit"),
        ({"prompt": "bell \x07"}, "prompt", "not text"),
        ({"prompt": 7}, "prompt", "valid string"),
        ({"prompt": "ok", "guidance_scale": 31.0}, "guidance_scale", "between 0 and 30"),
        ({"prompt": "ok", "strength": 0.5}, "strength", "only applies with an image"),
        ({"prompt": "ok", "image": b"not a png"}, "image", "not a PNG"),
        (
            {"prompt": "ok", "image": encode_png(np.zeros((4, 4, 1), np.uint8))},
            "image",
            "expected 8x8",
        ),
        ({"prompt": "ok", "image": png_of(0.5), "strength": 0.0}, "strength", r"\(0, 1\]"),
        ({"prompt": "ok", "class_label": 1}, "class_label", "not a sample parameter"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(
    tmp_path: Path, params: dict, field: str, message: str
) -> None:
    service, _ = make_service(tmp_path)
    with pytest.raises(InvalidArgument, match=message) as err:
        asyncio.run(t2i(service, **params))
    assert err.value.field == field


def test_models_without_the_capability_refuse_it(tmp_path: Path) -> None:
    service, _ = make_service(tmp_path)
    with pytest.raises(Unsupported, match="does not support text_to_image"):
        asyncio.run(service.generate("fake-ddpm", "text_to_image", {"prompt": "x"}, "test"))
    with pytest.raises(Unsupported, match="does not support sample"):
        asyncio.run(service.sample(MODEL, {"n": 1}, "test"))


def mask_png(keep: np.ndarray) -> bytes:
    """An inpainting mask: opaque where ``keep`` (H, W) is True, transparent elsewhere."""
    alpha = np.where(keep, 255, 0).astype(np.uint8)
    return encode_png(np.stack([np.zeros_like(alpha), alpha], axis=-1))


def test_inpainting_keeps_the_unmasked_region_and_repaints_the_rest(tmp_path: Path) -> None:
    service, _ = make_service(tmp_path)
    keep = np.zeros((SIZE, SIZE), dtype=bool)
    keep[:, : SIZE // 2] = True
    params = {"prompt": "", "image": png_of(0.9), "mask": mask_png(keep), "n": 8, "steps": 20}

    async def main() -> tuple[list[int], np.ndarray]:
        job = await service.submit_job(MODEL, "text_to_image", params, "test")
        steps = [e.data["steps"] async for e in job.events() if e.kind == "progress"]
        return steps, pixels(job.result["images"])

    steps, images = asyncio.run(main())
    assert steps == [20] * 20  # a mask repaints from noise: strength 1 by default
    kept, repainted = images[:, keep], images[:, ~keep]
    # this fake's autoencoder is exact: the kept half is the image to the PNG's rounding
    assert np.abs(kept - 0.9).max() <= 1 / 255
    # the repainted half is the model's (data mean 0: pixel 0.5), the image forgotten
    assert abs(repainted.mean() - 0.5) < 0.05


def test_a_mask_needs_an_image_and_transparency(tmp_path: Path) -> None:
    service, _ = make_service(tmp_path)
    keep = np.ones((SIZE, SIZE), dtype=bool)
    with pytest.raises(InvalidArgument, match="only applies with an image") as err:
        asyncio.run(t2i(service, prompt="x", mask=mask_png(keep)))
    assert err.value.field == "mask"
    with pytest.raises(InvalidArgument, match="needs transparency") as err:
        asyncio.run(t2i(service, prompt="x", image=png_of(0.5), mask=png_of(1.0)))
    assert err.value.field == "mask"
