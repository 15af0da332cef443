"""The features of a monitored version, and the window of live rows its drift is tested on.

Features come from the model's inputs, in order: a 2-D input ``x`` of N columns gives
``x[0]``…``x[N-1]``, a 1-D input (or one column) gives ``x``; inputs of more dimensions
(images) are not features. ``feature_names`` renames them all, in that order. BYTES inputs
are categorical.

A ``FeatureWindow`` collects the rows of the requests a version answered until it holds
``window.rows`` rows or has been open ``window.seconds`` seconds; then it is tested and a new
one starts. A window closes at exactly ``window.rows`` rows: a request whose rows cross the
boundary is split, and its rest starts the next window.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from modelserve.config.monitoring import DriftWindow
from modelserve.monitoring.drift import DriftTester, WindowResult
from modelserve.monitoring.events import InferenceEvent
from modelserve.types import TensorSpec

__all__ = ["FeatureWindow", "Layout", "layout_for"]


@dataclass(frozen=True, slots=True)
class Layout:
    names: tuple[str, ...]
    inputs: tuple[tuple[str, int], ...]
    """(input name, columns taken) in order."""


def layout_for(inputs: Sequence[TensorSpec], feature_names: Sequence[str] | None) -> Layout:
    names: list[str] = []
    taken: list[tuple[str, int]] = []
    for spec in inputs:
        shape = list(spec.shape)
        dims = [d for d in shape[1:]] if len(shape) >= 2 else []
        if len(shape) <= 1 or (len(shape) == 2 and shape[1] == 1):
            names.append(spec.name)
            taken.append((spec.name, 1))
        elif len(shape) == 2 and dims[0] > 1:
            names.extend(f"{spec.name}[{j}]" for j in range(dims[0]))
            taken.append((spec.name, dims[0]))
    if feature_names is not None:
        if len(feature_names) != len(names):
            raise ValueError(
                f"feature_names has {len(feature_names)} names for {len(names)} input columns"
            )
        names = list(feature_names)
    if not names:
        raise ValueError("no input gives features (a 2-D input, or 1-D inputs, are needed)")
    return Layout(tuple(names), tuple(taken))


class FeatureWindow:
    """The open window of one version (used on the store's thread only)."""

    def __init__(self, layout: Layout, tester: DriftTester, window: DriftWindow) -> None:
        self.layout = layout
        self.tester = tester
        self.window = window
        self._parts: list[list[np.ndarray]] = [[] for _ in layout.names]
        self.rows = 0
        self.opened = time.monotonic()
        self._limit = max(window.rows, window.min_rows)
        """The rows a window closes at (``rows``, unless ``min_rows`` is larger)."""

    def add(self, event: InferenceEvent) -> tuple[WindowResult, ...]:
        """Add the rows of an answered request. The windows it fills are tested and closed
        (oldest first): a window holds exactly ``window.rows`` rows, the rest of a request that
        crosses the boundary starts the next one."""
        by_name = {t.name: t for t in event.inputs}
        arrays: list[np.ndarray] = []
        batch: int | None = None
        for name, width in self.layout.inputs:
            tensor = by_name.get(name)
            if tensor is None:
                return ()
            data = tensor.data
            rows = data.reshape(data.shape[0], -1) if data.ndim >= 1 else data.reshape(1, 1)
            if rows.shape[1] < width or (batch is not None and rows.shape[0] != batch):
                return ()
            batch = rows.shape[0]
            arrays.extend(rows[:, j] for j in range(width))
        if not batch:
            return ()
        limit = self._limit
        if self.rows + batch < limit:  # the common case: the window stays open
            for part, column in zip(self._parts, arrays, strict=True):
                part.append(column)
            self.rows += batch
            return ()
        closed: list[WindowResult] = []
        start = 0
        while start < batch:
            take = min(limit - self.rows, batch - start)
            for part, column in zip(self._parts, arrays, strict=True):
                part.append(column[start : start + take])
            self.rows += take
            start += take
            if self.rows >= limit:
                result = self.test(close=True)
                if result is not None:
                    closed.append(result)
        return tuple(closed)

    def due(self) -> bool:
        """Full, or open long enough with enough rows to test."""
        if self.rows >= self.window.rows:
            return True
        return (
            self.rows >= self.window.min_rows
            and time.monotonic() - self.opened >= self.window.seconds
        )

    def test(self, close: bool) -> WindowResult | None:
        """Test the rows collected (None below ``min_rows``); ``close`` starts a new window."""
        if self.rows < self.window.min_rows:
            if close:
                self.opened = time.monotonic()  # its rows carry over to the next window
            return None
        columns = [
            np.concatenate(part) if part else np.empty(0, dtype=np.float64) for part in self._parts
        ]
        result = self.tester.test(columns)
        if close:
            self._parts = [[] for _ in self.layout.names]
            self.rows = 0
            self.opened = time.monotonic()
        return result
