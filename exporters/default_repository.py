"""Build model repositories with the project's own train + export code.

The default repository the server ships with is not a download: it is trained here, on
the bundled MNIST digits, by the same trainer and exporter a user runs, so the served
model always matches the code and its manifest says how it was made.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from latentserve.exporters.export import export_run
from latentserve.training.config import RunConfig, builtin_config_path, load_config
from latentserve.training.devices import Compute
from latentserve.training.trainer import train

log = logging.getLogger(__name__)

#: (built-in config, model name) of the default repository.
#: The VAE trains in about 3 minutes, the latent text-to-image model in about 6.5 (2 cores).
DEFAULT_MODELS: tuple[tuple[str, str], ...] = (
    ("vae-mnist", "vae-mnist"),
    ("ldm-mnist", "ldm-mnist"),
)

#: The other families, one MNIST model each: opt-in (``--with-families``), because
#: training them all takes far longer than a first run should (tens of minutes on CPU).
FAMILY_MODELS: tuple[tuple[str, str], ...] = (
    ("glow-mnist", "glow-mnist"),
    ("nvae-mnist", "nvae-mnist"),
    ("vqvae-mnist", "vqvae-mnist"),
    ("vqvae2-mnist", "vqvae2-mnist"),
    ("ddpm-mnist", "ddpm-mnist"),
    ("ldm-shapes", "ldm-shapes"),
    ("dcgan-mnist", "dcgan-mnist"),
    ("stylegan2-mnist", "stylegan2-mnist"),
    # Fashion-MNIST (60,000 images): sized for a GPU, many hours each on a CPU.
    ("ddpm-fashion", "ddpm-fashion"),
    ("stylegan2-fashion", "stylegan2-fashion"),
    ("ldm-fashion", "ldm-fashion"),
)


@dataclass(frozen=True)
class BuildEntry:
    """One model version to train and export."""

    config: RunConfig
    name: str
    version: str | None = None


def builtin_entry(
    config_name: str, name: str, version: str | None = None, seed: int | None = None
) -> BuildEntry:
    """An entry for a built-in config, optionally with another seed."""
    config = load_config(builtin_config_path(config_name))
    if seed is not None:
        config = dataclasses.replace(config, seed=seed)
    return BuildEntry(config=config, name=name, version=version)


def build_repository(
    repository: Path,
    entries: list[BuildEntry],
    runs_dir: Path,
    *,
    progress: bool = False,
    compute: Compute | None = None,
) -> list[Path]:
    """Train (on ``compute``, default the CPU) and export each entry; returns the version
    folders written."""
    written = []
    for entry in entries:
        label = f"{entry.name}-{entry.version or 'next'}-seed{entry.config.seed}"
        run_dir = runs_dir / label
        start = time.perf_counter()
        result = train(entry.config, run_dir, progress=progress, compute=compute)
        folder = export_run(run_dir, repository, entry.name, entry.version)
        log.info(
            "built %s in %.1fs (test %s)", folder, time.perf_counter() - start, result.test_metrics
        )
        written.append(folder)
    return written


def build_default_repository(
    repository: Path,
    *,
    runs_dir: Path | None = None,
    rebuild: bool = False,
    progress: bool = True,
    with_families: bool = False,
    compute: Compute | None = None,
) -> list[Path]:
    """Build the default repository; models already present are kept unless ``rebuild``."""
    models = DEFAULT_MODELS + (FAMILY_MODELS if with_families else ())
    entries = [
        builtin_entry(config_name, name)
        for config_name, name in models
        if rebuild or not _has_version(repository / name)
    ]
    if not entries:
        log.info("default models already present in %s", repository)
        return []
    if runs_dir is not None:
        return build_repository(repository, entries, runs_dir, progress=progress, compute=compute)
    with tempfile.TemporaryDirectory(prefix="latentserve-runs-") as tmp:
        return build_repository(repository, entries, Path(tmp), progress=progress, compute=compute)


def _has_version(model_dir: Path) -> bool:
    return any(p.is_dir() and p.name.isdigit() for p in model_dir.glob("*"))
