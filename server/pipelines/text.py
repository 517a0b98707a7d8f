"""Prompts → the text encoder's token states, for text-to-image pipelines.

Tokenization is ``latentserve.text_tokens``, the one training used, behind request
validation that names the field. The encoder graph is the caller's ``run`` (the model's
``text_encoder`` batcher), so this module knows no pipeline. Identical prompts are common
(the empty unconditional prompt of every guided job, a client redrawing one prompt with new
seeds), so their states are kept in a bounded LRU, and a prompt already being computed is
awaited rather than computed again.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import numpy as np
from latentserve.server.engine import deadlines
from latentserve.server.errors import InvalidArgument
from latentserve.server.metrics import ServerMetrics

from latentserve.manifest import Manifest
from latentserve.text_tokens import PromptTokenizer, TokenLimitError

Arrays = dict[str, np.ndarray]
RunGraph = Callable[[Arrays], Awaitable[Arrays]]
Embedding = tuple[np.ndarray, np.ndarray]  # states (.., max_tokens, hidden), mask (.., max_tokens)
Tokens = tuple[np.ndarray, np.ndarray]  # input_ids, attention_mask

# Characters checked before tokenizing, which costs time and memory per character: far more
# than any prompt within the token limit needs, far less than a request body may carry.
MAX_PROMPT_CHARS = 4096
# C0/C1 control characters except tab, newline and carriage return, and lone surrogates
# (valid in a JSON string, not text).
_NOT_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


class PromptEncoder:
    """Validate and tokenize prompts; ``embed`` gives their states, cached by prompt text."""

    def __init__(
        self,
        tokenizer: PromptTokenizer,
        run: RunGraph,
        *,
        cache_size: int = 1024,
        max_chars: int = MAX_PROMPT_CHARS,
        model: str = "",
        metrics: ServerMetrics | None = None,
    ) -> None:
        self._tokenizer = tokenizer
        self._run = run
        self._cache_size = cache_size
        self._max_chars = max_chars
        self._cache: OrderedDict[str, Embedding] = OrderedDict()
        self._pending: dict[str, tuple[asyncio.Future[Embedding], int]] = {}
        self._hits = metrics.text_cache_hits.labels(model=model) if metrics else None
        self._misses = metrics.text_cache_misses.labels(model=model) if metrics else None

    @classmethod
    def from_manifest(
        cls,
        manifest: Manifest,
        version_dir: Path,
        run: RunGraph,
        *,
        cache_size: int = 1024,
        metrics: ServerMetrics | None = None,
    ) -> PromptEncoder:
        """The encoder of a text-to-image model: its ``text`` section and tokenizer asset."""
        label = f"{manifest.name}@{manifest.version}"
        text = manifest.text
        if text is None:
            raise ValueError(f"{label}: the manifest has no text section")
        asset = manifest.assets.get(text.tokenizer)
        if asset is None:
            raise ValueError(f"{label}: the tokenizer asset {text.tokenizer!r} is not listed")
        tokenizer = PromptTokenizer(version_dir / asset.path, text.max_tokens)
        return cls(tokenizer, run, cache_size=cache_size, model=label, metrics=metrics)

    def encode(self, prompts: Sequence[object], field: str = "prompt") -> Tokens:
        """``input_ids`` and ``attention_mask`` (len(prompts), max_tokens) int64.

        Raises ``InvalidArgument`` naming ``field`` (``field[i]`` for several prompts) for
        a prompt that is not text, too long in characters, or over the token limit. The
        empty prompt is valid: it is the unconditional input.
        """
        texts = self._validated(prompts, field)
        return self._tokenize(texts, [_name(field, i, len(texts)) for i in range(len(texts))])

    async def embed(self, prompts: Sequence[object], field: str = "prompt") -> Embedding:
        """``hidden_states`` (len(prompts), max_tokens, hidden) float32 and the mask.

        Validates like ``encode``; then every distinct prompt counts once as a cache hit
        (cached, or being computed for another call) or a miss (computed in one graph call
        with this call's other misses).
        """
        texts = self._validated(prompts, field)
        if not texts:
            raise ValueError("embed needs at least one prompt")
        distinct = list(dict.fromkeys(texts))
        new = [t for t in distinct if t not in self._cache and t not in self._pending]
        if new:
            names = [_name(field, texts.index(t), len(texts)) for t in new]
            task = asyncio.ensure_future(self._compute(*self._tokenize(new, names)))
            self._pending.update((t, (task, row)) for row, t in enumerate(new))
            task.add_done_callback(functools.partial(self._settle, new))
        self._count(hits=len(distinct) - len(new), misses=len(new))
        found: dict[str, Embedding] = {}
        waiting = []
        for text in distinct:  # take cached entries now: a later await may evict them
            if text in self._cache:
                self._cache.move_to_end(text)
                found[text] = self._cache[text]
            else:
                waiting.append((text, *self._pending[text]))
        for text, task, row in waiting:
            # shielded: a caller that goes away leaves the computation to the others
            states, mask = await asyncio.shield(task)
            found[text] = (states[row], mask[row])
        return np.stack([found[t][0] for t in texts]), np.stack([found[t][1] for t in texts])

    def _validated(self, prompts: Sequence[object], field: str) -> list[str]:
        texts: list[str] = []
        for i, prompt in enumerate(prompts):
            name = _name(field, i, len(prompts))
            if not isinstance(prompt, str):
                raise InvalidArgument(name, f"must be text, got {type(prompt).__name__}")
            if len(prompt) > self._max_chars:
                raise InvalidArgument(
                    name, f"{len(prompt)} characters, over the limit of {self._max_chars}"
                )
            if bad := _NOT_TEXT.search(prompt):
                code = f"U+{ord(bad.group()):04X}"
                raise InvalidArgument(name, f"character {code} at {bad.start()} is not text")
            texts.append(prompt)
        return texts

    def _tokenize(self, texts: list[str], names: list[str]) -> Tokens:
        try:
            return self._tokenizer.encode(texts)
        except TokenLimitError as error:
            raise InvalidArgument(
                names[error.index],
                f"{error.count} tokens, over the limit of {error.limit}; shorten the prompt",
            ) from None

    async def _compute(self, ids: np.ndarray, mask: np.ndarray) -> Embedding:
        deadlines.detach()  # every request asking for these prompts waits on this one task
        outputs = await self._run({"input_ids": ids, "attention_mask": mask})
        return outputs["hidden_states"], mask

    def _settle(self, texts: list[str], task: asyncio.Future[Embedding]) -> None:
        for text in texts:
            del self._pending[text]
        # exception() also marks a failure seen: the callers awaiting it raise it themselves
        if task.cancelled() or task.exception() is not None:
            return
        states, mask = task.result()
        for row, text in enumerate(texts):
            # copies: a cached row must not keep its whole batch's array alive
            self._remember(text, (states[row].copy(), mask[row].copy()))

    def _remember(self, text: str, embedding: Embedding) -> None:
        if self._cache_size == 0:
            return
        self._cache[text] = embedding
        self._cache.move_to_end(text)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _count(self, hits: int, misses: int) -> None:
        if self._hits is not None and hits:
            self._hits.inc(hits)
        if self._misses is not None and misses:
            self._misses.inc(misses)


def _name(field: str, index: int, count: int) -> str:
    return field if count == 1 else f"{field}[{index}]"
