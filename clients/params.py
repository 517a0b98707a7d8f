"""Sample parameters as both transports send them.

What a model takes depends on its kind (every model: ``n``, ``seed``; VAE-like models:
``temperature``; diffusion models: ``steps``, ``sampler``, ``guidance_scale``, ...), so the
clients pass parameters through by name and leave checking them to the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI imports this module at start-up: no Pillow until it is used
    from latentserve.clients.images import ImageInput


def sample_params(n: int, seed: int | None, params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters to send; ``None`` means "not given" and is left out.

    Leaving a parameter out lets the server apply the model's default, and keeps a
    parameter of one kind (``temperature``) from reaching a model of another (diffusion),
    which would refuse it.
    """
    given = {"n": n, "seed": seed, **params}
    return {name: value for name, value in given.items() if value is not None}


def interpolate_params(
    seed_a: int | None,
    seed_b: int | None,
    frames: int | None,
    image_a: ImageInput | None,
    image_b: ImageInput | None,
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """The interpolation parameters to send (images as PNG bytes); ``None`` is left out."""
    from latentserve.clients.images import to_png

    given = {"seed_a": seed_a, "seed_b": seed_b, "frames": frames, **params}
    images = {"image_a": image_a, "image_b": image_b}
    given |= {name: to_png(image) for name, image in images.items() if image is not None}
    return {name: value for name, value in given.items() if value is not None}


def typed_value(text: str) -> int | float | str:
    """A parameter value typed on the command line: an int if it reads as one, else a float,
    else the text itself (``20`` -> 20, ``0.5`` -> 0.5, ``ddim`` -> "ddim")."""
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text
