"""The response cache: answers to identical requests served from memory, without queueing.

One ``ResponseCache`` per server process holds every cached answer, bounded by a total of bytes
(``--response-cache-mb``); each model version with ``response_cache: {max_mb}`` in its
model.yaml gets a ``CachePartition`` bounded by its own share. Both bounds evict the least
recently used answers first. A partition belongs to one loaded version: a reloaded version
starts empty, and the lifecycle clears a retired one's.

The key is a BLAKE2b digest of the model's name and version, every input (name, datatype,
shape and bytes; BYTES elements with their lengths) and the requested outputs (names and
parameters, save ``binary_data``, which changes the encoding only). Values are the answer's
output arrays, copied and read-only.

Everything here runs on the event loop: no locks.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modelserve.runtimes.base import Arrays
from modelserve.types import RequestedOutput

__all__ = ["CachePartition", "ResponseCache", "requested_key"]

ENTRY_OVERHEAD = 256
"""Bytes counted per entry besides its arrays: the key, the dictionaries' slots, the arrays'
headers."""
ENCODING_ONLY = frozenset(("binary_data",))


def requested_key(outputs: tuple[RequestedOutput, ...] | None) -> tuple[Any, ...] | None:
    """What of the requested outputs changes an answer (None: every output)."""
    if outputs is None:
        return None
    return tuple(
        (o.name, tuple(sorted((k, v) for k, v in o.parameters.items() if k not in ENCODING_ONLY)))
        for o in outputs
    )


def _array_bytes(array: npt.NDArray[Any]) -> int:
    if array.dtype != object:
        return int(array.nbytes)
    return int(array.size) * 8 + sum(
        len(item) for item in array.reshape(-1) if isinstance(item, bytes)
    )


def _frozen(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    copy = np.array(array, copy=True)
    copy.flags.writeable = False
    return copy


@dataclass(slots=True)
class _Entry:
    outputs: Arrays
    size: int


class CachePartition:
    """One model version's cached answers."""

    def __init__(
        self, cache: ResponseCache, name: str, version: str, max_bytes: int, serial: int
    ) -> None:
        self._cache = cache
        self.name = name
        self.version = version
        self.max_bytes = max_bytes
        self.serial = serial
        self.bytes = 0
        self.generation = 0
        """Bumped by ``clear``: an answer computed before it is not stored after it."""
        self.entries: OrderedDict[bytes, _Entry] = OrderedDict()

    def key(
        self, arrays: Mapping[str, npt.NDArray[Any]], requested: tuple[Any, ...] | None
    ) -> bytes:
        digest = hashlib.blake2b(digest_size=32)
        digest.update(f"{self.name}\0{self.version}\0".encode())
        for name in sorted(arrays):
            array = arrays[name]
            digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
            if array.dtype == object:
                for item in array.reshape(-1):
                    data = item if isinstance(item, bytes) else repr(item).encode()
                    digest.update(len(data).to_bytes(8, "little"))
                    digest.update(data)
            else:
                digest.update(np.ascontiguousarray(array).data)
        digest.update(repr(requested).encode())
        return digest.digest()

    def get(self, key: bytes) -> Arrays | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        self.entries.move_to_end(key)
        self._cache.touch(self, key)
        return entry.outputs

    def put(self, key: bytes, outputs: Arrays, generation: int) -> None:
        """Store an answer computed while ``generation`` was current (else drop it)."""
        if generation != self.generation:
            return
        size = ENTRY_OVERHEAD + sum(_array_bytes(a) for a in outputs.values())
        if size > self.max_bytes or size > self._cache.max_bytes:
            return
        self.remove(key)
        self.entries[key] = _Entry({name: _frozen(a) for name, a in outputs.items()}, size)
        self.bytes += size
        self._cache.added(self, key, size)
        while self.bytes > self.max_bytes:
            self.evict_oldest()

    def evict_oldest(self) -> None:
        key = next(iter(self.entries))
        self.remove(key)
        self._cache.evictions += 1

    def remove(self, key: bytes) -> None:
        entry = self.entries.pop(key, None)
        if entry is not None:
            self.bytes -= entry.size
            self._cache.removed(self, key, entry.size)

    def clear(self) -> None:
        """Drop every answer (the version is retired, or what it depends on changed)."""
        self.generation += 1
        for key in list(self.entries):
            self.remove(key)


class ResponseCache:
    """Every partition of a server process, bounded together by ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evictions = 0
        self._serials = itertools.count(1)
        self._order: OrderedDict[tuple[int, bytes], CachePartition] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def partition(self, name: str, version: str, max_bytes: int) -> CachePartition:
        bound = min(max_bytes, self.max_bytes)
        return CachePartition(self, name, version, bound, next(self._serials))

    # ---- called by the partitions ------------------------------------------------------------

    def touch(self, partition: CachePartition, key: bytes) -> None:
        self._order.move_to_end((partition.serial, key))

    def added(self, partition: CachePartition, key: bytes, size: int) -> None:
        self._order[(partition.serial, key)] = partition
        self.bytes += size
        while self.bytes > self.max_bytes and self._order:
            (_, oldest), owner = next(iter(self._order.items()))
            owner.remove(oldest)
            self.evictions += 1

    def removed(self, partition: CachePartition, key: bytes, size: int) -> None:
        del self._order[(partition.serial, key)]
        self.bytes -= size
