"""The sequence table: arrival order is run order, one request at a time per sequence, state per
sequence, ends and idle sequences dropped, requests without a start refused."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from modelserve.errors import InvalidArgument
from modelserve.runtimes.base import SEQUENCE_KEY, Arrays
from modelserve.scheduling.batcher import Completed
from modelserve.scheduling.sequences import SequenceRequest, Sequences, sequence_request


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[Any, int, int]] = []
        self.running = 0

    async def submit(self, arrays: Arrays, rows: int, deadline: float | None) -> Completed:
        context = arrays[SEQUENCE_KEY].item()
        self.running += 1
        assert self.running == 1, "one request of a sequence at a time"
        await asyncio.sleep(0.001)
        context.state["n"] = context.state.get("n", 0) + int(arrays["x"][0])
        self.seen.append((context.id, int(arrays["x"][0]), context.instance))
        self.running -= 1
        return Completed({"y": np.array([context.state["n"]])}, 0, 0, 0)


async def test_order_state_and_end() -> None:
    sequences, recorder = Sequences("m", 2, 10_000_000), Recorder()
    calls = [
        sequences.submit(
            recorder.submit, {"x": np.array([i])}, 1, None, SequenceRequest("a", i == 0, i == 4)
        )
        for i in range(5)
    ]
    done = await asyncio.gather(*calls)
    assert [int(d.outputs["y"][0]) for d in done] == [0, 1, 3, 6, 10]
    assert [x for _, x, _ in recorder.seen] == [0, 1, 2, 3, 4]
    assert len(sequences) == 0
    with pytest.raises(InvalidArgument, match="START flag"):
        await sequences.submit(
            recorder.submit, {"x": np.array([1])}, 1, None, SequenceRequest("a", False, False)
        )


async def test_sequences_spread_over_instances_and_idle_ones_go() -> None:
    sequences, recorder = Sequences("m", 2, 1), Recorder()  # 1 µs idle
    for seq_id in (1, 2):
        await sequences.submit(
            recorder.submit, {"x": np.array([1])}, 1, None, SequenceRequest(seq_id, True, False)
        )
    assert sorted(instance for _, _, instance in recorder.seen) == [0, 1]
    await asyncio.sleep(0.15)
    with pytest.raises(InvalidArgument, match="idle longer"):
        await sequences.submit(
            recorder.submit, {"x": np.array([1])}, 1, None, SequenceRequest(1, False, False)
        )


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({}, "correlation ID"),
        ({"sequence_id": 0}, "correlation ID"),
        ({"sequence_id": 1.5}, "integer or a string"),
        ({"sequence_id": 3, "sequence_start": 1}, "'sequence_start' must be a boolean"),
    ],
)
def test_parameters(parameters: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        sequence_request("m", parameters)
    assert sequence_request("m", {"sequence_id": "s", "sequence_end": True}).end
