"""Closed, explicit registries: names in configs map only to code registered here.

No config string is ever turned into an import. Families, datasets and export recipes
each keep one table, written out row by row in one module that imports what it names; a
second row under a taken name is an error, so two modules can never silently fight over
what ``"vae"`` means, and nothing registers itself as a side effect of being imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class ClosedRegistry(Generic[T]):
    """Name → item, refusing duplicates; unknown names list the known ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    @classmethod
    def table(cls, kind: str, rows: Iterable[T], name: Callable[[T], str]) -> ClosedRegistry[T]:
        """A registry of ``rows``, each under ``name(row)``; a repeated name is refused."""
        registry: ClosedRegistry[T] = cls(kind)
        for row in rows:
            registry.register(name(row), row)
        return registry

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

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        """The items, sorted by name."""
        return (self._items[name] for name in self.names())
