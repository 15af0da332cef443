"""Sticky buckets, splits in basis points, the stored record and the merged tallies."""

from __future__ import annotations

import random

import pytest

from modelserve.config.experiment import parse_experiment
from modelserve.routing.experiments import (
    BASIS,
    DURATIONS_MAX,
    ArmTally,
    ExperimentState,
    Split,
    bucket,
    percentile,
)


def test_bucket_is_stable_and_spread() -> None:
    assert bucket("exp", "user-1") == bucket("exp", "user-1")
    assert 0 <= bucket("exp", "user-1") < BASIS
    points = [bucket("exp", f"user-{i}") for i in range(20_000)]
    below = sum(p < 1_000 for p in points) / len(points)
    assert abs(below - 0.1) < 0.01  # uniform: a tenth of the keys below 1,000
    # another experiment reshuffles the keys
    assert sum(bucket("other", f"user-{i}") == p for i, p in enumerate(points)) < 50


def test_split_bounds_and_moving_weights_moves_only_the_margin() -> None:
    before = Split.of({"1": 90, "2": 10}, {"1": "a", "2": "b"})
    after = Split.of({"1": 80, "2": 20}, {"1": "a", "2": "b"})
    assert before.bounds == (9_000, 10_000) and after.bounds == (8_000, 10_000)
    keys = [f"user-{i}" for i in range(5_000)]
    moved = [
        (before.pick(bucket("e", k)), after.pick(bucket("e", k)))
        for k in keys
        if before.pick(bucket("e", k)) != after.pick(bucket("e", k))
    ]
    assert moved and all(m == (0, 1) for m in moved)
    assert abs(len(moved) / len(keys) - 0.1) < 0.02
    odd = Split.of({"1": 33.33, "2": 33.33, "3": 33.34}, {})
    assert odd.bounds == (3_333, 6_666, 10_000) and odd.arms == ("1", "2", "3")
    assert [odd.pick(p) for p in (0, 3_332, 3_333, 6_666, 9_999)] == [0, 0, 1, 2, 2]


def test_state_round_trips_and_keeps_a_bounded_history() -> None:
    config = parse_experiment({"canary": {"version": "2", "steps": [10, 100]}})
    state = ExperimentState(
        "id", "m", config.model_dump(mode="json"), "api", "running", {"1": 90, "2": 10}, {}
    )
    for i in range(600):
        state.record(float(i), "inconclusive", "hold", {"i": i})
    again = ExperimentState.loads(state.dumps())
    assert (
        again == state and len(again.history) == 500 and again.history[-1]["figures"] == {"i": 599}
    )
    assert again.config == config and again.active


def test_tallies_merge_with_a_uniform_duration_sample() -> None:
    rng = random.Random(1)
    fast, slow = ArmTally(), ArmTally()
    for _ in range(6_000):
        fast.add(True, rng.uniform(0, 1), False)
    for _ in range(2_000):
        slow.add(True, rng.uniform(10, 11), False)
    slow.add(False, 0.0, True)
    merged = ArmTally.merged([fast.document(), slow.document()])
    assert merged.requests == 8_001 and merged.errors == 1 and merged.seen == 8_000
    assert len(merged.durations_ms) <= DURATIONS_MAX + 1
    share_slow = sum(d >= 10 for d in merged.durations_ms) / len(merged.durations_ms)
    assert share_slow == pytest.approx(0.25, abs=0.03)
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert percentile(list(map(float, range(1, 101))), 0.99) == 99.0
    assert percentile([], 0.99) is None
