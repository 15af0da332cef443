"""pandas DataFrames in and out. Imported only when a DataFrame is passed to ``predict``, so the
client never imports pandas otherwise (it is the ``pandas`` extra)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from modelserve.client.tables import column_array, output_columns

__all__ = ["PredictionFrame", "frame_columns", "to_frame"]


class PredictionFrame(pd.DataFrame):  # type: ignore[misc]
    """A DataFrame with the call's ``id``, ``model_name`` and ``model_version`` (pandas carries
    them through slicing and copies: ``_metadata``)."""

    _metadata = ["id", "model_name", "model_version", "outputs"]
    id: str | None
    model_name: str
    model_version: str
    outputs: dict[str, npt.NDArray[Any]]

    @property
    def _constructor(self) -> type[PredictionFrame]:
        return PredictionFrame


def frame_columns(frame: pd.DataFrame) -> tuple[dict[str, npt.NDArray[Any]], int, Any]:
    """(columns by name, rows, index). Columns holding lists or arrays stay one per row."""
    columns: dict[str, npt.NDArray[Any]] = {}
    for name in frame.columns:
        series = frame[name]
        values = series.to_numpy()
        if values.dtype == object or not isinstance(values, np.ndarray):
            values = column_array(list(series))
        columns[str(name)] = values
    return columns, len(frame), frame.index


def to_frame(
    outputs: Mapping[str, npt.NDArray[Any]],
    rows: int,
    index: Any,
    *,
    id: str,
    model_name: str,
    model_version: str,
) -> PredictionFrame:
    frame = PredictionFrame(output_columns(outputs, rows), index=index)
    frame.id = id
    frame.model_name = model_name
    frame.model_version = model_version
    frame.outputs = dict(outputs)
    return frame
