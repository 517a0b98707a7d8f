"""Shared fixtures. No torch import at module level: server tests run without torch.

Shared helpers that are not fixtures live in the ``helpers`` package and are imported
explicitly; a conftest is never imported by name."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.server_process import SERVER_TOML, ServerFactory, ServerProcess

ENV_PREFIX = "LATENTSERVE_"


def _clear_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)


@pytest.fixture(scope="session", autouse=True)
def _no_settings_env_for_servers() -> Iterator[None]:
    """Servers started by session and module fixtures inherit no ``LATENTSERVE_*``
    setting from the shell that runs the suite."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        _clear_settings_env(monkeypatch)
        yield


@pytest.fixture(autouse=True)
def _no_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts without ``LATENTSERVE_*`` variables, whatever ran before it.
    (Knobs of the suite itself, such as ``LATENTSERVE_SOAK_S``, are read when modules are
    collected, before any fixture runs.)"""
    _clear_settings_env(monkeypatch)


@pytest.fixture(scope="session")
def start_server(tmp_path_factory: pytest.TempPathFactory) -> ServerFactory:
    """``with start_server(repository, "name", config=..., extra_args=..., env=...) as
    server:`` runs a real server (torch blocked) in a fresh folder named after ``name``,
    and checks on exit that it drained and exited with code 0."""

    @contextlib.contextmanager
    def start(
        repository: Path, name: str = "server", config: str = SERVER_TOML, **options: Any
    ) -> Iterator[ServerProcess]:
        process = ServerProcess(repository, tmp_path_factory.mktemp(name), config, **options)
        try:
            yield process
        finally:
            code = process.stop()
        assert code == 0, process.log()

    return start


@pytest.fixture(scope="session")
def tiny_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository built by the real train + export code from tiny configs.

    Holds ``vae-tiny`` versions 1 and 2 (trained with different seeds, so their outputs
    differ) and ``ae-tiny`` version 1 (no sampler graph, no "sample" capability); all
    28×28×1 MNIST models. Takes a few seconds once per test session.
    """
    from latentserve.exporters.default_repository import build_repository, builtin_entry

    repository = tmp_path_factory.mktemp("tiny_repository")
    entries = [
        builtin_entry("vae-tiny", "vae-tiny", version="1", seed=0),
        builtin_entry("vae-tiny", "vae-tiny", version="2", seed=1),
        builtin_entry("ae-tiny", "ae-tiny", version="1", seed=0),
    ]
    build_repository(repository, entries, tmp_path_factory.mktemp("tiny_runs"))
    return repository


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
def family_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository of one tiny model per likelihood family, built by the real code."""
    from latentserve.exporters.default_repository import build_repository, builtin_entry

    repository = tmp_path_factory.mktemp("family_repository")
    entries = [builtin_entry(config, name, version="1", seed=0) for config, name in FAMILY_MODELS]
    build_repository(repository, entries, tmp_path_factory.mktemp("family_runs"))
    return repository


@pytest.fixture(scope="session")
def diffusion_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository holding ``ddpm-tiny`` (a class-conditional pixel DDPM), built by the
    real train + export code."""
    from latentserve.exporters.default_repository import build_repository, builtin_entry

    repository = tmp_path_factory.mktemp("diffusion_repository")
    entries = [builtin_entry("ddpm-tiny", "ddpm-tiny", version="1", seed=0)]
    build_repository(repository, entries, tmp_path_factory.mktemp("diffusion_runs"))
    return repository


@pytest.fixture(scope="session")
def text_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository holding ``ldm-tiny`` and ``ldm-shapes-tiny`` (latent text-to-image on
    MNIST and on RGB shapes, with the MiniLM text encoder, encoder and decoder graphs), built
    by the real train + export code."""
    from latentserve.exporters.default_repository import build_repository, builtin_entry

    repository = tmp_path_factory.mktemp("text_repository")
    entries = [
        builtin_entry(name, name, version="1", seed=0) for name in ("ldm-tiny", "ldm-shapes-tiny")
    ]
    build_repository(repository, entries, tmp_path_factory.mktemp("text_runs"))
    return repository


GAN_MODELS = ["dcgan-tiny", "stylegan2-tiny"]


@pytest.fixture(scope="session")
def gan_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository holding ``dcgan-tiny`` and ``stylegan2-tiny`` (truncation, style
    mixing), built by the real train + export code."""
    from latentserve.exporters.default_repository import build_repository, builtin_entry

    repository = tmp_path_factory.mktemp("gan_repository")
    entries = [builtin_entry(name, name, version="1", seed=0) for name in GAN_MODELS]
    build_repository(repository, entries, tmp_path_factory.mktemp("gan_runs"))
    return repository
