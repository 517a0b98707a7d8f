"""Tiny trained runs for tests: a built-in ``*-tiny`` config, optionally shortened, trained
into a folder; and an ONNX Runtime session on one graph of an exported model."""

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


def onnx_session(folder: Path, role: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(folder / f"{role}.onnx"), providers=["CPUExecutionProvider"])
