"""The closed registry of model families (see ``latentserve.training.registry``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from latentserve.training.families.base import ImageModel
from latentserve.training.families.layers import ImageShape
from latentserve.training.registry import ClosedRegistry


@dataclass(frozen=True)
class Family:
    """A family: its config dataclass and how to build its model from it."""

    name: str
    config_cls: type
    build: Callable[[Any, ImageShape], ImageModel]


FAMILIES: ClosedRegistry[Family] = ClosedRegistry("model family")


def register_family(family: Family) -> Family:
    """Add a family; refuses a name that is already taken."""
    return FAMILIES.register(family.name, family)


def get_family(name: str) -> Family:
    """The family called ``name``; unknown names list the known ones."""
    return FAMILIES.get(name)


def family_names() -> list[str]:
    return FAMILIES.names()
