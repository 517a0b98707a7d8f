"""The ldm family: cross-attention reads the prompt (and only its unmasked tokens), caption
dropout draws from the step's generator, the autoencoder phase ends in a fitted scale and
a frozen autoencoder, resume is exact in either phase, and the text encoder stays out of
the checkpoint."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from latentserve.training import checkpoint as ckpt
from latentserve.training.checkpoint import build_model, load_run
from latentserve.training.config import parse_config
from latentserve.training.data import load_dataset
from latentserve.training.families.ldm import UNCONDITIONAL, LatentDiffusion, text_denoiser
from latentserve.training.likelihood import to_unit
from latentserve.training.trainer import resume, train
from safetensors import safe_open
from tiny_runs import tiny_config

AE_STEPS = 20  # of ldm-tiny, whose run has 40 steps


def tiny_model() -> LatentDiffusion:
    torch.manual_seed(0)
    model = build_model(tiny_config("ldm-tiny"))
    assert isinstance(model, LatentDiffusion)
    return model.eval()


def weights(run_dir: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    state = load_run(run_dir).model.state_dict()
    return {k: v for k, v in state.items() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("ldm") / "full"
    train(tiny_config("ldm-tiny"), run_dir, progress=False)
    return run_dir


def test_the_prediction_follows_the_prompt_not_the_padding() -> None:
    model = tiny_model()
    sample, t = torch.randn(2, 4, 7, 7), torch.tensor([500.0, 20.0])
    states, mask = model.embed(["a handwritten 3", "a handwritten 3"])
    other, other_mask = model.embed(["the digit seven", "the digit seven"])
    with torch.no_grad():
        base = text_denoiser(model.unet, sample, t, states, mask)
        assert not torch.allclose(base, text_denoiser(model.unet, sample, t, other, other_mask))
        padding = (mask == 0)[..., None]
        assert padding.any()
        garbage = torch.where(padding, torch.randn_like(states) * 10, states)
        torch.testing.assert_close(text_denoiser(model.unet, sample, t, garbage, mask), base)


def test_caption_dropout_draws_from_the_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model()
    model.autoencoder.latent_scale.fill_(1.0)  # past the autoencoder phase
    seen: list[list[str]] = []
    embed = model.embed
    monkeypatch.setattr(
        model, "embed", lambda prompts: seen.append(list(prompts)) or embed(prompts)
    )
    images = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8)
    captions = [f"a {i % 10}" for i in range(16)]

    def drawn(seed: int, drop: float) -> list[str]:
        model._losses(model.unet, images, torch.Generator().manual_seed(seed), captions, drop)
        return seen[-1]

    assert drawn(0, 0.5) == drawn(0, 0.5) != drawn(1, 0.5)
    assert UNCONDITIONAL in drawn(0, 0.5) and set(drawn(0, 0.5)) - {UNCONDITIONAL}
    assert drawn(0, 0.0) == captions and drawn(0, 1.0) == [UNCONDITIONAL] * 16


def test_the_autoencoder_phase_ends_in_a_fitted_scale_and_a_frozen_autoencoder(
    full_run: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    train(tiny_config("ldm-tiny"), run_dir, stop_at=AE_STEPS, progress=False)
    run = load_run(run_dir)
    assert isinstance(run.model, LatentDiffusion)
    images = load_dataset("mnist-captions", 28, 28, 1).train
    with torch.no_grad():
        std = run.model.autoencoder.encode(to_unit(images)).double().std()
    assert run.model.latent_scale == pytest.approx(1.0 / float(std), rel=1e-5)
    # the denoiser has not moved yet; afterwards the autoencoder does not move any more
    fresh = tiny_model().state_dict()
    assert all(torch.equal(v, fresh[k]) for k, v in weights(run_dir, "unet.").items())
    after = weights(full_run, "autoencoder.")
    assert all(torch.equal(v, after[k]) for k, v in weights(run_dir, "autoencoder.").items())
    assert not torch.equal(weights(full_run)["unet.conv_out.weight"], fresh["unet.conv_out.weight"])
    # resumed at the boundary, the run neither refits nor logs the scale twice
    resume(run_dir, progress=False)
    assert_same_run(run_dir, full_run)
    records = [r for r in ckpt.read_metrics(run_dir) if r["event"] == "calibrate"]
    assert [r["step"] for r in records] == [AE_STEPS]


def assert_same_run(run_dir: Path, reference: Path) -> None:
    expected, actual = weights(reference), weights(run_dir)
    assert expected.keys() == actual.keys()
    assert all(torch.equal(actual[k], v) for k, v in expected.items())
    assert ckpt.read_metrics(run_dir) == ckpt.read_metrics(reference)


@pytest.mark.parametrize("stop_at", [AE_STEPS // 2, AE_STEPS + 10])
def test_resume_is_exact_in_either_phase(full_run: Path, tmp_path: Path, stop_at: int) -> None:
    train(tiny_config("ldm-tiny"), tmp_path / "run", stop_at=stop_at, progress=False)
    resume(tmp_path / "run", progress=False)
    assert_same_run(tmp_path / "run", full_run)


def test_the_text_encoder_is_not_in_the_checkpoint(full_run: Path) -> None:
    with safe_open(full_run / ckpt.CHECKPOINT, "pt") as f:
        keys = list(f.keys())
    assert keys and all(k.split(".")[0] in {"autoencoder", "unet", "ema"} for k in keys)
    assert (full_run / ckpt.CHECKPOINT).stat().st_size < 5_000_000  # MiniLM alone is 90 MB


def test_a_dataset_without_captions_is_refused(tmp_path: Path) -> None:
    config = tiny_config("ldm-tiny").to_dict() | {"dataset": "mnist"}
    with pytest.raises(ValueError, match="'mnist' has no captions"):
        train(parse_config(config), tmp_path / "run", progress=False)


def test_both_phases_take_32x32_rgb() -> None:
    base = tiny_config("ldm-tiny")
    rgb = dataclasses.replace(
        base, image=dataclasses.replace(base.image, height=32, width=32, channels=3)
    )
    model = build_model(rgb)
    assert isinstance(model, LatentDiffusion) and model.latent_shape == [4, 8, 8]
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    captions = ["a red circle", "a small blue square on the left", "", "a green cross"]
    for _ in range(2):  # the autoencoder phase, then (scale set) the denoiser's
        step = model.training_step(x, torch.Generator().manual_seed(0), None, captions)
        step.loss.backward()
        assert math.isfinite(step.loss.item())
        model.autoencoder.latent_scale.fill_(1.0)
    assert any(p.grad is not None for p in model.unet.parameters())
