"""Open HTTP connections, read by the ``modelserve_http_connections`` gauge at scrape time: the
HTTP server keeps its own count and hands a reader to ``follow``."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ConnectionCounter"]


class ConnectionCounter:
    __slots__ = ("_sources",)

    def __init__(self) -> None:
        self._sources: list[Callable[[], int]] = []

    def follow(self, source: Callable[[], int]) -> None:
        """Count what ``source()`` returns (a server that counts its own connections)."""
        self._sources.append(source)

    @property
    def count(self) -> int:
        return sum(source() for source in self._sources)
