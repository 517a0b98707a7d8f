"""Shared fixtures. No torch import at module level: server tests run without torch.

Shared helpers that are not fixtures live in the ``helpers`` package and are imported
explicitly; a conftest is never imported by name."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
