"""Training configs: typed, unknown keys refused by name, built-ins all valid."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from latentserve.training.checkpoint import build_model
from latentserve.training.config import builtin_config_path, load_config, parse_config

BASE = {"family": "vae", "dataset": "mnist", "train": {"steps": 5}}


@pytest.mark.parametrize(
    ("patch", "key"),
    [
        ({"lerning_rate": 1}, "lerning_rate"),
        ({"train": {"steps": 5, "btch_size": 3}}, "train.btch_size"),
        ({"image": {"hight": 3}}, "image.hight"),
        ({"model": {"latent": 3}}, "model.latent"),
    ],
)
def test_unknown_keys_are_named(patch: dict, key: str) -> None:
    with pytest.raises(ValueError, match=f"unknown key '{key}'"):
        parse_config({**BASE, **patch})


def test_steps_xor_epochs() -> None:
    with pytest.raises(ValueError, match="exactly one of train.steps and train.epochs"):
        parse_config({**BASE, "train": {"steps": 5, "epochs": 2}})
    with pytest.raises(ValueError, match="exactly one"):
        parse_config({**BASE, "train": {}})


def test_unknown_family_lists_known() -> None:
    with pytest.raises(
        ValueError,
        match="unknown model family 'gan'.*autoencoder, dcgan, ddpm, glow, klae, ldm, nvae, "
        "pixelcnn, stylegan2, vae",
    ):
        parse_config({**BASE, "family": "gan"})


def test_toml_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('family = "vae"\ndataset = "mnist"\n[train]\nsteps = 2\nfoo = 1\n')
    with pytest.raises(ValueError, match=f"{path}: invalid config: unknown key 'train.foo'"):
        load_config(path)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.toml")


@pytest.mark.parametrize("name", ["vae-mnist", "ae-mnist", "vae-mnist-wide", "vae-tiny", "ae-tiny"])
def test_builtin_configs_build(name: str) -> None:
    config = load_config(builtin_config_path(name))
    model = build_model(config)
    x = torch.rand(2, 1, 28, 28)
    mean, _ = model.encode(x)
    loc, log_scale = model.decode(mean)
    assert loc.shape == log_scale.shape == (2, 1, 28, 28)


def test_architecture_follows_rgb_32() -> None:
    config = parse_config({**BASE, "image": {"height": 32, "width": 32, "channels": 3}})
    model = build_model(config)
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    assert model.decode_mean(model.encode(x.float() / 255)[0]).shape == (3, 3, 32, 32)
    out = model.training_step(x, torch.Generator().manual_seed(0))
    assert torch.isfinite(out.loss)


def test_image_size_must_fit_stages() -> None:
    config = parse_config({**BASE, "image": {"height": 30, "width": 30}})
    with pytest.raises(ValueError, match="divisible by 2\\*\\*2"):
        build_model(config)


def test_registries_refuse_a_second_registration() -> None:
    from latentserve.exporters.recipes import RECIPES
    from latentserve.training.data import DATASETS
    from latentserve.training.families.registry import FAMILIES

    with pytest.raises(ValueError, match="model family 'vae' is already registered"):
        FAMILIES.register("vae", FAMILIES.get("vae"))
    with pytest.raises(ValueError, match="export recipe for family 'vae' is already registered"):
        RECIPES.register("vae", RECIPES.get("vae"))
    with pytest.raises(ValueError, match="dataset 'mnist' is already registered"):
        DATASETS.register("mnist", DATASETS.get("mnist"))


def test_a_table_refuses_a_repeated_row() -> None:
    from latentserve.training.registry import ClosedRegistry

    with pytest.raises(ValueError, match="dataset 'a' is already registered"):
        ClosedRegistry.table("dataset", ["a", "b", "a"], name=str)
