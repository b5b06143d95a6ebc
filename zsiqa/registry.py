"""One registry helper for every named thing users pick by string: backbones and their prefixes, distances,
baselines, datasets, transforms, MOS losses.

Each registry holds one record type, and every record carries its ``name``: ``register(record)`` is the one way to
add one (``@register_backbone`` builds a backbone's record around the decorated builder), ``get(name)`` returns it or
raises one clear error naming the choices, ``names()`` lists them. A registry whose records live in modules that
register themselves on import takes ``load`` (called before lookups).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import ConfigError, ZsiqaError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> entries of one kind; an unknown name raises ``error`` (``ConfigError`` unless given)."""

    def __init__(self, kind: str, load: Callable[[], None] | None = None, error: type[ZsiqaError] = ConfigError,
                 hint: str = "") -> None:
        self.kind, self.error, self.hint = kind, error, hint
        self._load = load
        self._entries: dict[str, T] = {}

    def register(self, entry: T) -> T:
        """Add ``entry`` under ``entry.name``; a name registered twice is an error."""
        name = entry.name
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = entry
        return entry

    def _loaded(self) -> dict[str, T]:
        if self._load is not None:
            load, self._load = self._load, None
            load()
        return self._entries

    def get(self, name: str) -> T:
        """The entry registered as ``name``, or ``error``: 'unknown <kind> <name>; available: ...'."""
        entries = self._loaded()
        if name not in entries:
            hint = f"; {self.hint}" if self.hint else ""
            raise self.error(f"unknown {self.kind} {name!r}; available: {', '.join(sorted(entries))}{hint}")
        return entries[name]

    __getitem__ = get

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._loaded())

    def __contains__(self, name: object) -> bool:
        return name in self._loaded()

    def __iter__(self) -> Iterator[str]:
        """Names in registration order (``names()`` sorts them)."""
        return iter(list(self._loaded()))

    def __len__(self) -> int:
        return len(self._loaded())

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` in registration order."""
        return list(self._loaded().items())
