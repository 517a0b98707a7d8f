"""The autoregressive-prior pipeline over fake step graphs: raster order, conditioning,
per-seed reproducibility, batched steps across requests, and the sampling arithmetic."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from helpers.fakes import Recorder, sample_params
from latentserve.server.pipelines import AutoregressivePriorPipeline
from latentserve.server.pipelines.autoregressive import categorical
from latentserve.server.settings import ServingOptions

from latentserve.manifest import (
    CodeMap,
    GraphFile,
    GraphSpec,
    ImageSpec,
    LatentGroup,
    LatentSpec,
    Manifest,
    Provenance,
    TensorSpec,
)

K = 5
TOP = (2, 2)
BOTTOM = (2, 3)


class CountingPrior(Recorder):
    """Puts (almost) all mass on ``(sum of the codes before this position + 1) % K``, plus
    the sum of the conditioning map if it has one: a rule only a raster-order sampler
    that feeds back its own draws, and passes the condition, can reproduce."""

    backend = "fake"
    providers = ["FakeProvider"]

    def __init__(self, name: str, condition: str | None = None, peaked: bool = True) -> None:
        super().__init__()
        self.name, self.condition, self.peaked = name, condition, peaked

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        codes = inputs[self.name]
        n, h, w = codes.shape
        self.record(n)
        logits = np.zeros((n, K, h, w), np.float32)
        if not self.peaked:
            return {"logits": logits}
        flat = codes.reshape(n, -1)
        before = np.concatenate([np.zeros((n, 1)), np.cumsum(flat, axis=1)[:, :-1]], axis=1)
        target = before + 1
        if self.condition is not None:
            target = target + inputs[self.condition].reshape(n, -1).sum(1, keepdims=True)
        target = (target % K).astype(int).reshape(n, h, w)
        np.put_along_axis(logits, target[:, None], 60.0, axis=1)
        return {"logits": logits}


class CodeDecoder(Recorder):
    """Writes the bottom codes into the image (so tests can read them back)."""

    backend = "fake"
    providers = ["FakeProvider"]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        bottom = inputs["codes_bottom"]
        self.record(bottom.shape[0])
        top_sum = inputs["codes_top"].reshape(len(bottom), -1).sum(1)
        image = np.concatenate([bottom.reshape(len(bottom), -1), top_sum[:, None]], axis=1)
        return {"image": (image / 255.0).reshape(-1, 1, 1, BOTTOM[0] * BOTTOM[1] + 1)}


def spec(inputs: dict[str, list], outputs: dict[str, list], role: str) -> GraphSpec:
    def tensors(d: dict[str, list]) -> list[TensorSpec]:
        return [
            TensorSpec(name=k, dtype="int64" if k.startswith("codes") else "float32", shape=v)
            for k, v in d.items()
        ]

    return GraphSpec(
        inputs=tensors(inputs),
        outputs=tensors(outputs),
        files={"onnx": GraphFile(path=f"{role}.onnx", sha256="0" * 64)},
    )


def manifest(bottom_conditions: list[str] | None = None) -> Manifest:
    top, bottom = ["batch", *TOP], ["batch", *BOTTOM]
    conditions = ["codes_top"] if bottom_conditions is None else bottom_conditions
    logits_top, logits_bottom = ["batch", K, *TOP], ["batch", K, *BOTTOM]
    image = ["batch", 1, 1, BOTTOM[0] * BOTTOM[1] + 1]
    return Manifest(
        name="fake-vq",
        version="1",
        family="vqvae2",
        pipeline="autoregressive_prior",
        capabilities=["sample"],
        image=ImageSpec(height=1, width=BOTTOM[0] * BOTTOM[1] + 1, channels=1),
        latent=LatentSpec(
            shape=list(BOTTOM),
            prior="autoregressive",
            groups=[
                LatentGroup(name="codes_top", shape=list(TOP), dtype="int64"),
                LatentGroup(name="codes_bottom", shape=list(BOTTOM), dtype="int64"),
            ],
        ),
        codes=[
            CodeMap(
                name="codes_top", height=TOP[0], width=TOP[1], codebook_size=K, prior="prior_top"
            ),
            CodeMap(
                name="codes_bottom",
                height=BOTTOM[0],
                width=BOTTOM[1],
                codebook_size=K,
                prior="prior_bottom",
                conditions=conditions,
            ),
        ],
        graphs={
            "prior_top": spec({"codes_top": top}, {"logits": logits_top}, "prior_top"),
            "prior_bottom": spec(
                {"codes_bottom": bottom, **{c: top for c in conditions}},
                {"logits": logits_bottom},
                "prior_bottom",
            ),
            "decoder": spec(
                {"codes_top": top, "codes_bottom": bottom}, {"image": image}, "decoder"
            ),
        },
        provenance=Provenance(
            config={}, dataset="none", created_at="2026-01-01T00:00:00Z", latentserve_version="0"
        ),
    )


def pipeline(peaked: bool = True) -> tuple[AutoregressivePriorPipeline, dict[str, Recorder]]:
    graphs = {
        "prior_top": CountingPrior("codes_top", peaked=peaked),
        "prior_bottom": CountingPrior("codes_bottom", "codes_top", peaked=peaked),
        "decoder": CodeDecoder(),
    }
    serving = ServingOptions(
        max_batch_size=32,
        max_queue_delay_ms=2,
        max_queue_size=64,
        max_n=16,
        max_concurrent_batches=1,
    )
    return AutoregressivePriorPipeline(manifest(), graphs, serving), graphs


def expected_codes() -> tuple[list[int], int]:
    def rule(length: int, offset: int) -> list[int]:
        out: list[int] = []
        for _ in range(length):
            out.append((sum(out) + 1 + offset) % K)
        return out

    top = rule(TOP[0] * TOP[1], 0)
    return rule(BOTTOM[0] * BOTTOM[1], sum(top)), sum(top)


def decoded(images: np.ndarray) -> np.ndarray:
    return np.rint(images.reshape(len(images), -1) * 255).astype(int)


def test_codes_are_drawn_in_raster_order_top_map_first() -> None:
    p, graphs = pipeline()
    images = asyncio.run(p.sample(p.prepare(sample_params(3, 0, 1.0))))
    bottom, top_sum = expected_codes()
    assert decoded(images).tolist() == [[*bottom, top_sum]] * 3
    # one step call per position of each map, then one decode
    assert len(graphs["prior_top"].batch_sizes) == TOP[0] * TOP[1]
    assert len(graphs["prior_bottom"].batch_sizes) == BOTTOM[0] * BOTTOM[1]
    assert graphs["decoder"].batch_sizes == [3]


def test_same_seed_same_codes_however_chunked_and_batched() -> None:
    p, graphs = pipeline(peaked=False)  # uniform logits: the codes come from the seed alone

    async def main() -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
        together = await asyncio.gather(
            *(p.sample(p.prepare(sample_params(4, seed, 1.0))) for seed in (1, 2, 1))
        )
        alone = await p.sample(p.prepare(sample_params(4, 1, 1.0)))
        chunks = [
            part async for _, part in p.sample_stream(p.prepare(sample_params(4, 1, 1.0)), chunk=3)
        ]
        return together, alone, chunks

    together, alone, chunks = asyncio.run(main())
    np.testing.assert_array_equal(together[0], alone)
    np.testing.assert_array_equal(together[2], alone)
    np.testing.assert_array_equal(np.concatenate(chunks), alone)
    assert not np.array_equal(together[0], together[1])
    # three concurrent requests of 4 shared step batches
    assert max(graphs["prior_top"].batch_sizes) > 4


def test_a_prior_graph_must_take_its_conditions() -> None:
    graphs = {"prior_top": Recorder(), "prior_bottom": Recorder(), "decoder": Recorder()}
    serving = ServingOptions(
        max_batch_size=8, max_queue_delay_ms=1, max_queue_size=8, max_n=8, max_concurrent_batches=1
    )
    broken = manifest().model_copy(
        update={"codes": [manifest().codes[0], manifest(bottom_conditions=[]).codes[1]]}
    )
    with pytest.raises(ValueError, match="prior_bottom"):
        AutoregressivePriorPipeline(broken, graphs, serving)


def test_categorical_follows_softmax_over_temperature() -> None:
    logits = np.tile(np.log(np.array([[0.1, 0.2, 0.7]])), (40_000, 1))
    uniform = np.random.default_rng(0).random(40_000)
    for temperature in (1.0, 0.5):
        draws = categorical(logits, temperature, uniform)
        target = np.exp(np.log([0.1, 0.2, 0.7]) / temperature)
        target /= target.sum()
        np.testing.assert_allclose(np.bincount(draws, minlength=3) / len(draws), target, atol=0.01)
    assert categorical(np.array([[0.0, 0.0]]), 1.0, np.array([0.999999])).tolist() == [1]
