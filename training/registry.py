"""Closed, explicit registries: names in configs map only to code registered here.

No config string is ever turned into an import. Families and export recipes each keep
one registry; a second registration under a taken name is an error, so two modules can
never silently fight over what ``"vae"`` means.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class ClosedRegistry(Generic[T]):
    """Name → item, refusing duplicates; unknown names list the known ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(self.names())
            raise ValueError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._items)
