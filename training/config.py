"""Training configs: a TOML file into typed dataclasses, unknown keys refused by name.

A typo such as ``lerning_rate`` would otherwise be silently ignored and train a
different model than the one the file describes. The config written next to a run
(``config.json``) is the *resolved* one, defaults included, so a run folder alone says
exactly what was trained and can be resumed or exported without the original file.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

from latentserve.training.builtin_configs import builtin_config_names, configs_dir
from latentserve.training.families import ImageShape, get_family
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic.dataclasses import dataclass as config_dataclass

_STRICT = ConfigDict(extra="forbid")


@config_dataclass(config=_STRICT)
class ImageConfig:
    """Image size the model is built for; imagefolder datasets are resized to it."""

    height: int = Field(default=28, gt=0)
    width: int = Field(default=28, gt=0)
    channels: Literal[1, 3] = 1

    def shape(self) -> ImageShape:
        return ImageShape(self.channels, self.height, self.width)


@config_dataclass(config=_STRICT)
class TrainConfig:
    """Optimisation settings. Give exactly one of ``steps`` and ``epochs``."""

    steps: int | None = Field(default=None, gt=0)
    epochs: int | None = Field(default=None, gt=0)
    batch_size: int = Field(default=64, gt=0)
    lr: float = Field(default=1e-3, gt=0)
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    warmup_steps: int = Field(default=0, ge=0)
    grad_clip: float | None = Field(default=None, gt=0)
    log_every: int = Field(default=50, gt=0)
    checkpoint_every: int | None = Field(default=None, gt=0)
    eval_batch_size: int = Field(default=250, gt=0)
    num_threads: int = Field(default=0, ge=0)  # 0: min(2, CPU count)

    @model_validator(mode="after")
    def _one_length(self) -> TrainConfig:
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("give exactly one of train.steps and train.epochs")
        return self

    def total_steps(self, n_train: int) -> int:
        """Steps to run: ``steps``, or ``epochs`` full passes (the last partial batch dropped)."""
        if self.batch_size > n_train:
            raise ValueError(f"batch_size {self.batch_size} exceeds the {n_train} train images")
        if self.steps is not None:
            return self.steps
        return self.epochs * (n_train // self.batch_size)


@config_dataclass(config=_STRICT)
class SampleConfig:
    """Sampling defaults the export writes into the manifest: what a request that leaves
    them out gets. ``temperature`` scales a prior's noise (or divides its logits); a model
    whose samples are most typical below 1 (flows, hierarchical VAEs, code priors) ships
    the value measured best, so clients need not know it."""

    temperature: float = Field(default=1.0, gt=0, le=100)


@config_dataclass(config=_STRICT)
class RunConfig:
    """A whole training run: which family on which data, how big, how long."""

    family: str
    dataset: str
    seed: int = 0
    description: str = ""
    image: ImageConfig = field(default_factory=ImageConfig)
    model: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=1000))
    sample: SampleConfig = field(default_factory=SampleConfig)

    def model_config(self) -> Any:
        """The family's own config dataclass, validated (unknown keys refused)."""
        family = get_family(self.family)
        try:
            return TypeAdapter(family.config_cls).validate_python(self.model)
        except ValidationError as exc:
            raise ValueError(_describe(exc, prefix="model.")) from None

    def to_dict(self) -> dict[str, Any]:
        """Resolved config, defaults included, JSON-ready (the ``model`` table too)."""
        data = dataclasses.asdict(self)
        data["model"] = dataclasses.asdict(self.model_config())
        return data


def _describe(exc: ValidationError, prefix: str = "") -> str:
    lines = []
    for err in exc.errors():
        key = prefix + ".".join(str(p) for p in err["loc"])
        if err["type"] in {"unexpected_keyword_argument", "extra_forbidden"}:
            lines.append(f"unknown key {key!r}")
        else:
            lines.append(f"{key}: {err['msg']}")
    return "invalid config: " + "; ".join(lines)


def parse_config(data: dict[str, Any]) -> RunConfig:
    """Validate a config mapping, the family's ``model`` table included."""
    try:
        config = TypeAdapter(RunConfig).validate_python(data)
    except ValidationError as exc:
        raise ValueError(_describe(exc)) from None
    config.model_config()  # refuse unknown model keys now, not at build time
    return config


def builtin_config_path(name: str) -> Path:
    """A config shipped with the package (``latentserve/configs/<name>.toml``)."""
    path = configs_dir() / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(builtin_config_names())
        raise FileNotFoundError(f"no built-in config named {name!r} (built-in: {known})")
    return path


def resolve_config_arg(arg: str) -> Path:
    """A config given on the command line: a file path, or the name of a built-in one."""
    path = Path(arg)
    return path if path.suffix in {".toml", ".json"} or path.exists() else builtin_config_path(arg)


def load_config(path: Path) -> RunConfig:
    """Read a TOML (training config) or JSON (a run's resolved config) file."""
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text())
        else:
            with path.open("rb") as f:
                data = tomllib.load(f)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    try:
        return parse_config(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
