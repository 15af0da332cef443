"""Open HTTP connections, counted by the HTTP layer, read by the ``modelserve_http_connections``
gauge at scrape time."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ConnectionCounter"]


class ConnectionCounter:
    """Either the HTTP server calls ``opened()`` / ``closed()`` for each connection (on the event
    loop), or it already keeps a count and hands a reader to ``follow``; ``count`` adds both."""

    __slots__ = ("_open", "_sources")

    def __init__(self) -> None:
        self._open = 0
        self._sources: list[Callable[[], int]] = []

    def opened(self) -> None:
        self._open += 1

    def closed(self) -> None:
        self._open -= 1

    def follow(self, source: Callable[[], int]) -> None:
        """Also count what ``source()`` returns (a server that counts its own connections)."""
        self._sources.append(source)

    @property
    def count(self) -> int:
        return self._open + sum(source() for source in self._sources)
