"""Tiny trained runs for tests: a built-in ``*-tiny`` config, optionally shortened, trained
into a folder; a session-wide cache of such runs; and an ONNX Runtime session on one
graph of an exported model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import onnxruntime as ort
from latentserve.training.config import RunConfig, builtin_config_path, load_config
from latentserve.training.trainer import train


def tiny_config(name: str = "vae-tiny", **train_overrides: object) -> RunConfig:
    config = load_config(builtin_config_path(name))
    if train_overrides:
        config = dataclasses.replace(
            config, train=dataclasses.replace(config.train, **train_overrides)
        )
    return config


def train_tiny(name: str, run_dir: Path, **train_overrides: object) -> Path:
    train(tiny_config(name, **train_overrides), run_dir, progress=False)
    return run_dir


class TinyRuns:
    """Built-in configs trained once per test session, keyed by (config, seed).

    Fixtures that build repositories and the family-table test all ask for their runs
    here, so a config they share is trained once however many of them the session uses.
    A run is only read after training (exports load it), never changed.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._done: dict[tuple[str, int], Path] = {}

    def run(self, config_name: str, seed: int = 0) -> Path:
        key = (config_name, seed)
        if key not in self._done:
            config = dataclasses.replace(load_config(builtin_config_path(config_name)), seed=seed)
            run_dir = self.root / f"{config_name}-seed{seed}"
            train(config, run_dir, progress=False)
            self._done[key] = run_dir
        return self._done[key]

    def export(self, repository: Path, models: list[tuple[str, str, str, int]]) -> Path:
        """Export each (config, name, version, seed) run into ``repository``."""
        from latentserve.exporters.export import export_run

        for config_name, name, version, seed in models:
            export_run(self.run(config_name, seed), repository, name, version)
        return repository


def onnx_session(folder: Path, role: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(folder / f"{role}.onnx"), providers=["CPUExecutionProvider"])
