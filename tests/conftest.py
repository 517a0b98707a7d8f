"""Shared fixtures. No torch import at module level: server tests run without torch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tiny_runs import TinyRuns


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> TinyRuns:
    """Built-in configs trained once per session (see ``tiny_runs.TinyRuns``)."""
    from tiny_runs import TinyRuns

    return TinyRuns(tmp_path_factory.mktemp("tiny_runs"))


@pytest.fixture(scope="session")
def tiny_repository(tmp_path_factory: pytest.TempPathFactory, tiny_runs: TinyRuns) -> Path:
    """A model repository built by the real train + export code from tiny configs.

    Holds ``vae-tiny`` versions 1 and 2 (trained with different seeds, so their outputs
    differ) and ``ae-tiny`` version 1 (no sampler graph, no "sample" capability); all
    28×28×1 MNIST models. Takes a few seconds once per test session.
    """
    models = [
        ("vae-tiny", "vae-tiny", "1", 0),
        ("vae-tiny", "vae-tiny", "2", 1),
        ("ae-tiny", "ae-tiny", "1", 0),
    ]
    return tiny_runs.export(tmp_path_factory.mktemp("tiny_repository"), models)


# The likelihood families as tiny models: (config, served name). Each samples differently
# on the server: one-shot decode (NVAE), exact inverse flow (Glow), autoregressive prior
# stepped by the server (VQ-VAE; VQ-VAE-2 with a bottom map conditioned on the top one;
# the pixel-level PixelCNN with a position step graph).
FAMILY_MODELS = [
    ("glow-tiny", "glow-tiny"),
    ("nvae-tiny", "nvae-tiny"),
    ("vqvae-tiny", "vqvae-tiny"),
    ("vqvae2-tiny", "vqvae2-tiny"),
    ("pixelcnn-tiny", "pixelcnn-tiny"),
]


@pytest.fixture(scope="session")
def family_repository(tmp_path_factory: pytest.TempPathFactory, tiny_runs: TinyRuns) -> Path:
    """A repository of one tiny model per likelihood family, built by the real code."""
    models = [(config, name, "1", 0) for config, name in FAMILY_MODELS]
    return tiny_runs.export(tmp_path_factory.mktemp("family_repository"), models)


@pytest.fixture(scope="session")
def diffusion_repository(tmp_path_factory: pytest.TempPathFactory, tiny_runs: TinyRuns) -> Path:
    """A repository holding ``ddpm-tiny`` (a class-conditional pixel DDPM), built by the
    real train + export code."""
    models = [("ddpm-tiny", "ddpm-tiny", "1", 0)]
    return tiny_runs.export(tmp_path_factory.mktemp("diffusion_repository"), models)


@pytest.fixture(scope="session")
def text_repository(tmp_path_factory: pytest.TempPathFactory, tiny_runs: TinyRuns) -> Path:
    """A repository holding ``ldm-tiny`` and ``ldm-shapes-tiny`` (latent text-to-image on
    MNIST and on RGB shapes, with the MiniLM text encoder, encoder and decoder graphs), built
    by the real train + export code."""
    models = [(name, name, "1", 0) for name in ("ldm-tiny", "ldm-shapes-tiny")]
    return tiny_runs.export(tmp_path_factory.mktemp("text_repository"), models)


GAN_MODELS = ["dcgan-tiny", "stylegan2-tiny"]


@pytest.fixture(scope="session")
def gan_repository(tmp_path_factory: pytest.TempPathFactory, tiny_runs: TinyRuns) -> Path:
    """A repository holding ``dcgan-tiny`` and ``stylegan2-tiny`` (truncation, style
    mixing), built by the real train + export code."""
    models = [(name, name, "1", 0) for name in GAN_MODELS]
    return tiny_runs.export(tmp_path_factory.mktemp("gan_repository"), models)
