"""The Kafka source commits an offset only once every request before it was answered."""

from __future__ import annotations

from modelserve.transports.streams.kafka import OffsetTracker


def test_commits_only_below_the_lowest_request_still_served() -> None:
    offsets = OffsetTracker()
    for offset in (10, 11, 12):
        offsets.taken(0, offset)
    offsets.taken(1, 5)
    offsets.answered(0, 11)
    assert offsets.committable() == {}  # 10 is still served
    offsets.answered(0, 10)
    assert offsets.committable() == {0: 12}
    offsets.answered(0, 12)
    offsets.answered(1, 5)
    assert offsets.committable() == {0: 13, 1: 6}
    assert offsets.committable() == {}  # nothing moved


def test_gaps_in_offsets_do_not_stall_commits() -> None:
    offsets = OffsetTracker()
    offsets.taken(0, 3)
    offsets.taken(0, 7)  # 4..6: transaction markers, never read
    offsets.answered(0, 7)
    offsets.answered(0, 3)
    assert offsets.committable() == {0: 8}
    offsets.forget()
    assert offsets.committable() == {}
