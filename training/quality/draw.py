"""Drawing samples to score from a running server, through the SDK.

The client is passed in (anything with ``get_model`` and ``sample``), so the chunking,
seeding and parameter handling here are tested without a server. Each chunk's seed is
derived from the base seed and the chunk's index, so a run is reproducible and no two
chunks repeat each other's noise.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from latentserve.clients.params import typed_value
from latentserve.training.captions import digit_caption
from latentserve.training.seeds import derive_seed
from PIL import Image

Param = int | float | str


class SamplingClient(Protocol):
    """The part of the SDK's client that drawing needs."""

    def get_model(self, model: str) -> Any: ...

    def sample(self, model: str, n: int, seed: int | None = None, **params: Any) -> Any: ...

    def text_to_image(
        self, model: str, prompt: str, n: int = 1, seed: int | None = None, **params: Any
    ) -> Any: ...


@dataclass(frozen=True)
class Chunk:
    """One sample request: ``n`` images drawn with ``seed`` (for ``class_label``, if set)."""

    n: int
    seed: int
    class_label: int | None = None


def parse_params(pairs: list[str]) -> dict[str, Param]:
    """``key=value`` pairs as typed keyword arguments: int, else float, else the string."""
    params: dict[str, Param] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param expects key=value, got {pair!r}")
        params[key.strip()] = typed_value(text.strip())
    return params


def plan_chunks(n: int, max_n: int, seed: int, class_labels: bool = False) -> list[Chunk]:
    """Requests of at most ``max_n`` images each; with ``class_labels``, n/10 per digit."""
    if n < 1 or max_n < 1:
        raise ValueError(f"n and max_n must be positive, got n={n}, max_n={max_n}")
    if class_labels and n % 10:
        raise ValueError(
            f"--class-labels draws n/10 images per digit: n must be a multiple of 10, got {n}"
        )
    groups = [(n // 10, digit) for digit in range(10)] if class_labels else [(n, None)]
    sizes = [
        (min(max_n, count - start), label)
        for count, label in groups
        for start in range(0, count, max_n)
    ]
    return [Chunk(size, derive_seed(seed, i), label) for i, (size, label) in enumerate(sizes)]


def check_accepts(client: SamplingClient, params: dict[str, Param]) -> None:
    """Refuse, with a clear message, parameters this SDK's ``sample`` cannot pass on."""
    signature = inspect.signature(client.sample)
    try:
        signature.bind("model", n=1, seed=0, **params)
    except TypeError as exc:
        accepted = [p for p in signature.parameters if p not in ("model", "n", "seed")]
        raise ValueError(
            f"this SDK's sample() does not take {sorted(params)}: {exc} "
            f"(it accepts {', '.join(accepted) or 'no extra parameters'}; "
            "a newer latentserve client and server pass typed sampler parameters)"
        ) from exc


def to_digits(images: list[Image.Image]) -> np.ndarray:
    """PIL images from the server as uint8 (N, 1, 28, 28), the classifier's input."""
    arrays = [np.asarray(image.convert("L"), dtype=np.uint8) for image in images]
    if arrays and arrays[0].shape != (28, 28):
        raise ValueError(f"the classifier scores 28x28 grayscale images, got {arrays[0].shape}")
    return np.stack(arrays)[:, None] if arrays else np.zeros((0, 1, 28, 28), np.uint8)


def draw_samples(
    client: SamplingClient,
    model: str,
    n: int,
    seed: int,
    params: dict[str, Param],
    class_labels: bool = False,
    prompt_template: str | None = None,
    caption: Callable[[int, str], str] = digit_caption,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``n`` samples as uint8 (N, 1, 28, 28), and the requested labels with ``class_labels``.

    With ``prompt_template`` (text-to-image models) each class is asked for by a prompt, the
    template filled in by ``caption`` (``digit_caption``: "the digit {w}" -> "the digit
    seven"; for Fashion-MNIST ``item_caption``), so the conditional accuracy is the share
    of images that show the class their prompt names.
    """
    if class_labels and "class_label" in params:
        raise ValueError("give either --class-labels or --param class_label=K, not both")
    if prompt_template is not None and not class_labels:
        raise ValueError("a prompt template asks for each digit: use it with --class-labels")
    max_n = client.get_model(model).max_n or n  # 0: the server states no limit
    chunks = plan_chunks(n, max_n, seed, class_labels)
    if prompt_template is None:
        check_accepts(client, {**params, **({"class_label": 0} if class_labels else {})})
    images, labels = [], []
    for chunk in chunks:
        if prompt_template is not None:
            assert chunk.class_label is not None
            prompt = caption(chunk.class_label, prompt_template)
            result = client.text_to_image(model, prompt, n=chunk.n, seed=chunk.seed, **params)
            images.append(to_digits(result.images))
            labels.extend([chunk.class_label] * chunk.n)
            continue
        extra = (
            params if chunk.class_label is None else {**params, "class_label": chunk.class_label}
        )
        result = client.sample(model, n=chunk.n, seed=chunk.seed, **extra)
        if len(result.images) != chunk.n:
            raise ValueError(f"asked {model} for {chunk.n} images, got {len(result.images)}")
        images.append(to_digits(result.images))
        labels.extend([chunk.class_label] * chunk.n)
    return np.concatenate(images), np.array(labels) if class_labels else None


def to_rgb(images: list[Image.Image]) -> np.ndarray:
    """PIL images from the server as uint8 (N, 3, H, W)."""
    return np.stack(
        [np.asarray(image.convert("RGB"), dtype=np.uint8) for image in images]
    ).transpose(0, 3, 1, 2)


def draw_scenes(
    client: SamplingClient,
    model: str,
    captions: list[str] | tuple[str, ...],
    seed: int,
    params: dict[str, Param],
    concurrency: int = 8,
) -> np.ndarray:
    """One image per caption from a text-to-image model, uint8 (N, 3, H, W).

    Caption ``i`` is drawn with seed ``derive_seed(seed, i)``; ``concurrency`` requests are
    in flight at once, so the server steps them together in shared denoiser batches.
    """

    def one(item: tuple[int, str]) -> np.ndarray:
        i, caption = item
        result = client.text_to_image(model, caption, n=1, seed=derive_seed(seed, i), **params)
        return to_rgb(result.images)

    with ThreadPoolExecutor(max(1, concurrency)) as pool:
        return np.concatenate(list(pool.map(one, enumerate(captions))))
