"""The shadow figures of the whole server when it runs several processes (``--workers N``).

Each process compares the shadow copies it sent itself (routing/shadow.py). So that any of them
answers for all (``GET /v2/models/{m}/experiment``, the monitoring API, the dashboard), each one
writes its figures to a file of its own in the directory where the processes' metrics meet
(Prometheus' multiprocess directory: ``--metrics-dir``, a temporary one by default under
``--workers``) and reads the others' back, as Prometheus' multiprocess mode does with its
counters: ``shadow-<worker>.json``, replaced whole (``os.replace``), so a reader never sees half
of one. A process that exited leaves its file, so its copies still count (like its counters).

A process's figures (``state``) are plain counts, the sums and maximum of the absolute
differences, and its uniform sample of those differences (up to ``RESERVOIR`` values). They add
up: counts and sums add, maxima take the maximum, and the samples merge with each value weighted
by how many differences its sample stands for, so the merged p50 and p99 are those of every
process's differences together. The version a model is mirrored to is the one some process
mirrored to last (each file says when each process started mirroring to it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

__all__ = ["COUNTS", "SharedFigures", "merged_document"]

COUNTS = ("mirrored", "dropped", "failed", "compared", "mismatched", "rows", "agreed")
"""The counts of one (model, version) in one process, which add up over processes."""

State = Mapping[str, Any]
"""One process's figures of one (model, version): ``COUNTS``, ``diff_count``, ``diff_sum``,
``diff_max`` and ``kept`` (its sample of absolute differences)."""


def merged_document(version: str, states: Sequence[State]) -> dict[str, Any]:
    """The figures of ``version`` over the processes' ``states`` (one state: that process's
    figures as they are)."""
    counts = {name: sum(int(state[name]) for state in states) for name in COUNTS}
    rows, agreed = counts.pop("rows"), counts.pop("agreed")
    diff_count = sum(int(state["diff_count"]) for state in states)
    abs_diff: dict[str, float | int] | None = None
    if diff_count:
        p50, p99 = _quantiles([s for s in states if s["diff_count"]], (0.5, 0.99))
        abs_diff = {
            "count": diff_count,
            "mean": sum(float(state["diff_sum"]) for state in states) / diff_count,
            "p50": p50,
            "p99": p99,
            "max": max(float(state["diff_max"]) for state in states),
        }
    return {
        "version": version,
        **counts,
        "rows": rows,
        "agreement_ratio": agreed / rows if rows else None,
        "abs_diff": abs_diff,
    }


def _quantiles(states: Sequence[State], levels: Iterable[float]) -> list[float]:
    """Quantiles of the differences behind the samples: one sample's own (``np.quantile``);
    several, each value weighted by the differences its sample stands for (the inverted
    cumulative distribution of the weighted values)."""
    samples = [np.asarray(state["kept"], dtype=np.float64) for state in states]
    if len(samples) == 1:
        return [float(np.quantile(samples[0], level)) for level in levels]
    values = np.concatenate(samples)
    weights = np.concatenate(
        [
            np.full(len(s), int(state["diff_count"]) / len(s))
            for s, state in zip(samples, states, strict=True)
        ]
    )
    order = np.argsort(values, kind="stable")
    values, cumulative = values[order], np.cumsum(weights[order])
    found: list[float] = []
    for level in levels:
        index = int(np.searchsorted(cumulative, level * cumulative[-1], side="left"))
        found.append(float(values[min(index, len(values) - 1)]))
    return found


class SharedFigures:
    """This process's file of shadow figures in ``directory``, and the other processes'."""

    def __init__(self, directory: Path, worker: str) -> None:
        self.directory = directory
        self.path = directory / f"shadow-{worker}.json"
        self._read: dict[Path, tuple[tuple[int, int], dict[str, Any]]] = {}

    def publish(self, document: Mapping[str, Any]) -> None:
        """Write this process's figures (blocking: call it off the event loop). ``document``:
        ``latest`` (model -> [version, since when, epoch seconds]) and ``figures`` (model ->
        version -> state)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        data = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, self.path)

    def others(self) -> list[dict[str, Any]]:
        """The documents the other processes published (blocking); a file read again only when
        it changed, a file that cannot be read (it is being replaced) left out this time."""
        found: dict[Path, tuple[tuple[int, int], dict[str, Any]]] = {}
        with contextlib.suppress(FileNotFoundError):
            for path in self.directory.glob("shadow-*.json"):
                if path == self.path:
                    continue
                try:
                    stat = path.stat()
                    key = (stat.st_mtime_ns, stat.st_size)
                    cached = self._read.get(path)
                    if cached is None or cached[0] != key:
                        cached = (key, orjson.loads(path.read_bytes()))
                except (OSError, orjson.JSONDecodeError):
                    continue
                found[path] = cached
        self._read = found
        return [document for _, document in found.values()]
