"""A small name -> object registry with decorator registration and did-you-mean errors.

Used where a paper compares interchangeable variants: merge methods, vocabulary mappings,
importance metrics, span heads and losses, offline models.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def did_you_mean(name: str, options: list[str] | tuple[str, ...], n: int = 3) -> str:
    """Return ' Did you mean: a, b?' for the closest options, or '' when none is close."""
    name = str(name)
    close = difflib.get_close_matches(name, list(options), n=n, cutoff=0.5)
    if not close and len(name) >= 3:  # a prefix or fragment of a longer name
        close = [o for o in options if name.lower() in str(o).lower()][:n]
    return f" Did you mean: {', '.join(close)}?" if close else ""


class Registry(Generic[T]):
    """Map string keys to objects, with metadata recorded at registration time.

    >>> METRICS = Registry("importance metric")
    >>> @METRICS.register("ppl", paper="arXiv:2406.10594")
    ... def ppl(x): return x
    >>> METRICS.get("ppl") is ppl
    True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self.add(name, obj, **meta)
            return obj

        return deco

    def add(self, name: str, obj: T, **meta: Any) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj
        self._meta[name] = dict(meta)

    def check(self, name: str) -> str:
        """Raise ValueError with suggestions if `name` is not registered; return it otherwise."""
        if name not in self._items:
            raise ValueError(
                f"unknown {self.kind} {name!r}.{did_you_mean(name, self.names())} "
                f"Available: {', '.join(self.names())}"
            )
        return name

    def get(self, name: str) -> T:
        return self._items[self.check(name)]

    def meta(self, name: str) -> dict[str, Any]:
        return self._meta[self.check(name)]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
