"""The response cache: keys, LRU bounded by bytes per partition and in total, clearing."""

from __future__ import annotations

import numpy as np

from modelserve.scheduling.cache import ENTRY_OVERHEAD, ResponseCache, requested_key
from modelserve.types import RequestedOutput, as_object_array

X = {"x": np.arange(4, dtype=np.float32).reshape(1, 4)}


def answer(value: float, size: int = 100) -> dict[str, np.ndarray]:
    """An answer of ENTRY_OVERHEAD + ``size`` * 4 bytes."""
    return {"y": np.full(size, value, dtype=np.float32)}


def test_the_key_covers_model_inputs_and_requested_outputs() -> None:
    cache = ResponseCache(1 << 20)
    one = cache.partition("m", "1", 1 << 20)
    base = one.key(X, None)
    assert one.key({"x": X["x"].copy()}, None) == base
    assert cache.partition("m", "1", 1 << 20).key(X, None) == base  # same model and version
    assert cache.partition("m", "2", 1 << 20).key(X, None) != base
    assert cache.partition("n", "1", 1 << 20).key(X, None) != base
    assert one.key({"x": X["x"] + 1}, None) != base
    assert one.key({"x": X["x"].astype(np.float64)}, None) != base
    assert one.key({"x": X["x"].reshape(2, 2)}, None) != base
    assert one.key({"z": X["x"]}, None) != base
    wanted = requested_key((RequestedOutput("y"),))
    assert one.key(X, wanted) != base
    binary = requested_key((RequestedOutput("y", {"binary_data": True}),))
    assert binary == wanted  # the encoding does not change the answer
    top3 = requested_key((RequestedOutput("y", {"classification": 3}),))
    assert top3 != wanted
    strings = {"s": as_object_array([b"ab", b"c"])}
    assert one.key(strings, None) != one.key({"s": as_object_array([b"a", b"bc"])}, None)


def test_hits_return_read_only_copies() -> None:
    part = ResponseCache(1 << 20).partition("m", "1", 1 << 20)
    key = part.key(X, None)
    assert part.get(key) is None
    produced = answer(1.0)
    part.put(key, produced, part.generation)
    produced["y"][:] = 5  # the model's buffer may be reused
    found = part.get(key)
    assert found is not None and (found["y"] == 1.0).all()
    assert not found["y"].flags.writeable
    assert part.bytes == ENTRY_OVERHEAD + 400 and len(part.entries) == 1


def test_a_partition_evicts_its_least_recently_used() -> None:
    entry = ENTRY_OVERHEAD + 400
    cache = ResponseCache(1 << 20)
    part = cache.partition("m", "1", 2 * entry)
    keys = [part.key({"x": np.array([i])}, None) for i in range(3)]
    part.put(keys[0], answer(0), 0)
    part.put(keys[1], answer(1), 0)
    assert part.get(keys[0]) is not None  # now the most recent
    part.put(keys[2], answer(2), 0)
    assert part.get(keys[1]) is None and part.get(keys[0]) is not None
    assert part.bytes == 2 * entry == cache.bytes and cache.evictions == 1
    part.put(part.key({"x": np.array([9])}, None), answer(9, size=10_000), 0)  # over max: skipped
    assert len(part.entries) == 2


def test_the_server_total_evicts_across_models() -> None:
    entry = ENTRY_OVERHEAD + 400
    cache = ResponseCache(3 * entry)
    first = cache.partition("a", "1", 10 * entry)
    second = cache.partition("b", "1", 10 * entry)
    assert first.max_bytes == 3 * entry  # a share never exceeds the total
    for i in range(2):
        first.put(first.key({"x": np.array([i])}, None), answer(i), 0)
    second.put(second.key({"x": np.array([0])}, None), answer(0), 0)
    second.put(second.key({"x": np.array([1])}, None), answer(1), 0)  # evicts a's oldest
    assert len(first.entries) == 1 and len(second.entries) == 2
    assert cache.bytes == first.bytes + second.bytes == 3 * entry


def test_clear_drops_everything_and_refuses_answers_computed_before() -> None:
    cache = ResponseCache(1 << 20)
    part = cache.partition("m", "1", 1 << 20)
    key = part.key(X, None)
    generation = part.generation
    part.put(key, answer(1), generation)
    part.clear()
    assert part.get(key) is None and part.bytes == 0 == cache.bytes
    part.put(key, answer(1), generation)  # computed before the clear: stale
    assert part.get(key) is None
    part.put(key, answer(1), part.generation)
    assert part.get(key) is not None


def test_a_zero_total_is_off() -> None:
    assert not ResponseCache(0).enabled and ResponseCache(1).enabled
