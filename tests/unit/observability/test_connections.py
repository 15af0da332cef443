"""The open-connections gauge adds up what each transport reports."""

from __future__ import annotations

from modelserve.observability import ConnectionCounter


def test_connection_counter() -> None:
    counter = ConnectionCounter()
    assert counter.count == 0
    counter.follow(lambda: 5)
    counter.follow(lambda: 1)
    assert counter.count == 6
