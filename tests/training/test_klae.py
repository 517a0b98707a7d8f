"""KL autoencoder: spatial latent shapes, the loss terms, the latent scale fitted at the end
of training, exact resume, and the frozen first stage latent diffusion loads."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from latentserve.training import checkpoint as ckpt
from latentserve.training.data import load_mnist
from latentserve.training.families import ImageShape
from latentserve.training.families.klae import KLAEConfig, KLAutoencoder
from latentserve.training.latents import load_autoencoder
from latentserve.training.likelihood import to_unit
from latentserve.training.trainer import train
from safetensors.torch import load_file
from tiny_runs import tiny_config, train_tiny

TINY = KLAEConfig(widths=[8, 8, 16], groups=4)


@pytest.fixture(scope="module")
def klae_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny("klae-tiny", tmp_path_factory.mktemp("runs") / "klae")


@pytest.mark.parametrize(
    ("image", "latent"),
    [(ImageShape(1, 28, 28), [4, 7, 7]), (ImageShape(3, 32, 32), [4, 8, 8])],
)
def test_spatial_latent_shapes(image: ImageShape, latent: list[int]) -> None:
    model = KLAutoencoder(TINY, image).eval()
    x = torch.rand(3, image.channels, image.height, image.width)
    mean, logvar = model.posterior(x)
    assert model.latent_shape == latent
    assert mean.shape == logvar.shape == (3, *latent)
    assert torch.equal(model.encode(x), mean)  # deterministic: the posterior mean
    out = model.decode(mean)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1


def test_image_size_must_fit_the_downsamplings() -> None:
    with pytest.raises(ValueError, match="divisible by 4 for 2 downsamplings"):
        KLAutoencoder(TINY, ImageShape(1, 30, 30))


def _fixed_posterior(model: KLAutoencoder, mean: float, logvar: float) -> None:
    def posterior(x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (x01.shape[0], *model.latent_shape)
        return torch.full(shape, mean), torch.full(shape, logvar)

    model.posterior = posterior  # type: ignore[method-assign]


@pytest.mark.parametrize(
    ("mean", "logvar", "kl"),
    [(0.0, 0.0, 0.0), (1.0, 0.0, 0.5), (0.0, math.log(4.0), 0.5 * (4.0 - 1.0 - math.log(4.0)))],
)
def test_kl_per_latent_element(mean: float, logvar: float, kl: float) -> None:
    model = KLAutoencoder(TINY, ImageShape(1, 28, 28))
    _fixed_posterior(model, mean, logvar)
    x = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    scores = model.evaluate(x, torch.Generator())
    assert scores["kl_per_latent_dim"].tolist() == pytest.approx([kl, kl], abs=1e-6)


@pytest.mark.parametrize("recon_loss", ["l1", "mse"])
def test_loss_is_reconstruction_plus_weighted_kl(recon_loss: str) -> None:
    config = dataclasses.replace(TINY, kl_weight=0.1, recon_loss=recon_loss)
    torch.manual_seed(0)
    model = KLAutoencoder(config, ImageShape(1, 28, 28))
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    out = model.training_step(x, torch.Generator().manual_seed(1))
    assert out.loss.item() == pytest.approx(out.metrics[recon_loss] + 0.1 * out.metrics["kl"])
    g = torch.Generator().manual_seed(1)  # replay the one draw: the posterior sample
    mean, logvar = model.posterior(to_unit(x))
    z = mean + (0.5 * logvar).exp() * torch.randn(mean.shape, generator=g)
    error = model.decoder(z) - (to_unit(x) * 2 - 1)
    expected = error.abs().mean() if recon_loss == "l1" else error.square().mean()
    assert out.metrics[recon_loss] == pytest.approx(expected.item(), rel=1e-5)


def test_psnr_is_the_reconstruction_mse_in_db() -> None:
    model = KLAutoencoder(TINY, ImageShape(1, 28, 28)).eval()
    x = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    scores = model.evaluate(x, torch.Generator())
    mse = (model.decode(model.encode(to_unit(x))) - to_unit(x)).square().flatten(1).mean(1)
    assert torch.allclose(scores["recon_mse"], mse)
    assert torch.allclose(scores["psnr_db"], -10 * torch.log10(mse))


def test_training_fits_the_latent_scale_as_one_over_std(klae_run: Path) -> None:
    weights = load_file(str(klae_run / ckpt.CHECKPOINT))
    model = ckpt.load_run(klae_run).model
    with torch.no_grad():
        means = model.encode(to_unit(load_mnist().train)).double()
    assert weights["latent_scale"].item() == pytest.approx(1 / means.std().item(), rel=1e-5)
    [record] = [r for r in ckpt.read_metrics(klae_run) if r["event"] == "calibrate"]
    assert record["step"] == 30
    assert record["latent_scale"] == pytest.approx(weights["latent_scale"].item(), rel=1e-6)
    tests = ckpt.last_test_metrics(klae_run)
    assert set(tests) == {"recon_mse", "psnr_db", "kl_per_latent_dim"}  # no bits/dim


def test_training_improves_reconstructions(klae_run: Path) -> None:
    torch.manual_seed(0)
    untrained = KLAutoencoder(TINY, ImageShape(1, 28, 28)).eval()
    test = load_mnist().test
    before = untrained.evaluate(test, torch.Generator())["psnr_db"].mean().item()
    after = ckpt.last_test_metrics(klae_run)["psnr_db"]
    assert after > before + 3.0, (before, after)


def test_resume_lands_on_the_uninterrupted_weights_and_scale(tmp_path: Path) -> None:
    config = tiny_config("klae-tiny", steps=8, log_every=2)
    straight = train(config, tmp_path / "straight", progress=False)
    train(config, tmp_path / "resumed", stop_at=3, progress=False)
    stopped = load_file(str(tmp_path / "resumed" / ckpt.CHECKPOINT))
    assert stopped["latent_scale"].item() == 0.0  # not fitted before the last step
    resumed = train(config, tmp_path / "resumed", resume=True, progress=False)
    a = load_file(str(tmp_path / "straight" / ckpt.CHECKPOINT))
    b = load_file(str(tmp_path / "resumed" / ckpt.CHECKPOINT))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert a["latent_scale"].item() > 0
    assert resumed.test_metrics == straight.test_metrics


def test_frozen_autoencoder_gives_unit_variance_latents(klae_run: Path) -> None:
    autoencoder = load_autoencoder(klae_run)
    assert not any(p.requires_grad for p in autoencoder.model.parameters())
    assert not autoencoder.model.training and autoencoder.config.family == "klae"
    train_split = load_mnist().train
    latents = autoencoder.encode(train_split, batch_size=1000)
    assert latents.shape == (4500, 4, 7, 7) and latents.dtype == torch.float32
    assert latents.double().std().item() == pytest.approx(1.0, rel=1e-4)
    in_small_batches = autoencoder.encode(train_split[:50], batch_size=7)
    assert torch.allclose(in_small_batches, latents[:50], atol=1e-5)
    images = autoencoder.decode(latents[:50], batch_size=16)
    model = autoencoder.model
    with torch.no_grad():
        expected = model.decode(model.encode(to_unit(train_split[:50])))
    assert images.dtype == torch.uint8 and images.shape == (50, 1, 28, 28)
    assert (images.float() / 255 - expected).abs().max() <= 0.5 / 255 + 1e-4


def test_load_autoencoder_refuses_other_runs(tmp_path: Path) -> None:
    train_tiny("ae-tiny", tmp_path / "ae", steps=1)
    with pytest.raises(ValueError, match="'autoencoder' run, not a 'klae'"):
        load_autoencoder(tmp_path / "ae")
    train(tiny_config("klae-tiny"), tmp_path / "half", stop_at=2, progress=False)
    with pytest.raises(ValueError, match="no latent scale yet"):
        load_autoencoder(tmp_path / "half")
