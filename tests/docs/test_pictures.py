"""`make pictures` draws each family's grid from the model the documentation's captions
describe: the MNIST one where a repository holds several of a family (as `make families`
makes it hold, with the Fashion-MNIST and shapes models beside them)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import pictures  # noqa: E402
from latentserve.clients.results import ImageShape, ModelInfo  # noqa: E402


def model(name: str, family: str) -> ModelInfo:
    return ModelInfo(
        name=name,
        version="1",
        family=family,
        capabilities=["sample"],
        image=ImageShape(28, 28, 1),
        latent_shape=[],
    )


def test_each_family_is_drawn_from_its_mnist_model() -> None:
    models = [
        model("ldm-fashion", "ldm"),
        model("ldm-shapes", "ldm"),
        model("ldm-mnist", "ldm"),
        model("ddpm-fashion", "ddpm"),
        model("ddpm-mnist", "ddpm"),
        model("stylegan2-fashion", "stylegan2"),
        model("stylegan2-mnist", "stylegan2"),
        model("vae-mnist-wide", "vae"),
        model("vae-mnist", "vae"),
    ]
    chosen = {family: m.name for family, m in pictures.one_model_per_family(models).items()}
    assert chosen == {
        "ldm": "ldm-mnist",
        "ddpm": "ddpm-mnist",
        "stylegan2": "stylegan2-mnist",
        "vae": "vae-mnist",
    }


def test_a_family_without_an_mnist_model_is_drawn_from_its_first_by_name() -> None:
    models = [model("klae-shapes", "klae"), model("ldm-shapes", "ldm"), model("ldm-fashion", "ldm")]
    chosen = {family: m.name for family, m in pictures.one_model_per_family(models).items()}
    assert chosen == {"klae": "klae-shapes", "ldm": "ldm-fashion"}
