"""The closed registry of model families: names in configs map to code written here.

No config string is ever turned into an import; a family exists only if its module
registers it, and a second registration under the same name is an error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from latentserve.training.families.base import LatentModel
from latentserve.training.families.layers import ImageShape


@dataclass(frozen=True)
class Family:
    """A family: its config dataclass and how to build its model from it."""

    name: str
    config_cls: type
    build: Callable[[Any, ImageShape], LatentModel]


_FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Add a family; refuses a name that is already taken."""
    if family.name in _FAMILIES:
        raise ValueError(f"model family {family.name!r} is already registered")
    _FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Family:
    """The family called ``name``; unknown names list the known ones."""
    try:
        return _FAMILIES[name]
    except KeyError:
        known = ", ".join(sorted(_FAMILIES))
        raise ValueError(f"unknown model family {name!r}; known families: {known}") from None


def family_names() -> list[str]:
    return sorted(_FAMILIES)
