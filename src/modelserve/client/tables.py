"""Tables (DataFrames, records, CSV or Parquet rows) to model inputs, and outputs back to rows.

A table is a dict of column name -> one value per row. It maps onto the model in one of two ways:

- **by name**: every column is named after a model input: each column becomes that input, one
  row per table row (a column of lists or arrays becomes a 2-D input);
- **as features**: the model has one input: the columns, in order, become its second dimension
  (``[rows, columns]``), as a scikit-learn model takes them.

Outputs come back one row per input row: an output of one value per row is a column named after
it; an output of k values per row is k columns ``name[0]`` … ``name[k-1]`` (the feature naming
of the monitoring API). BYTES values come back as text when they are UTF-8.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from modelserve.client.convert import convert_array
from modelserve.client.errors import ClientError, InvalidInputError
from modelserve.types import ModelMetadata, Tensor, TensorSpec

__all__ = ["column_array", "output_columns", "output_rows", "table_inputs"]


def column_array(values: Sequence[Any]) -> npt.NDArray[Any]:
    """One column: a 1-D array, or an object array holding each row's list or array."""
    if any(isinstance(v, list | tuple | np.ndarray) for v in values):
        column = np.empty(len(values), dtype=object)
        column[:] = [np.asarray(v) for v in values]
        return column
    return np.asarray(values)


def _per_row(column: npt.NDArray[Any]) -> bool:
    return column.dtype == object and column.size > 0 and isinstance(column[0], np.ndarray)


def _input_by_name(name: str, column: npt.NDArray[Any], rows: int, spec: TensorSpec) -> Tensor:
    if _per_row(column):
        try:
            column = np.stack(list(column))
        except ValueError:
            raise InvalidInputError(
                f"input '{name}': the rows of column '{name}' have different shapes"
            ) from None
    datatype, array = convert_array(name, column, spec.datatype)
    if array.ndim == 1 and len(spec.shape) >= 2 and all(d in (1, -1) for d in spec.shape[1:]):
        array = array.reshape((rows,) + (1,) * (len(spec.shape) - 1))
    return Tensor(name, datatype, tuple(array.shape), array)


def _input_of_features(columns: Mapping[str, npt.NDArray[Any]], spec: TensorSpec) -> Tensor:
    converted = []
    for column_name, column in columns.items():
        if _per_row(column):
            raise InvalidInputError(
                f"column '{column_name}' holds lists; as features of input '{spec.name}' every "
                "column must hold one value per row"
            )
        converted.append(convert_array(spec.name, column, spec.datatype)[1])
    width = len(converted)
    if len(spec.shape) == 1 and width == 1:
        array = converted[0]
    else:
        if len(spec.shape) == 2 and spec.shape[1] > 0 and spec.shape[1] != width:
            raise InvalidInputError(
                f"input '{spec.name}' takes {spec.shape[1]} features; the table has {width} "
                f"columns ({', '.join(map(str, columns))})"
            )
        array = np.stack(converted, axis=1)
    return Tensor(spec.name, spec.datatype, tuple(array.shape), array)


def table_inputs(
    columns: Mapping[str, npt.NDArray[Any]], rows: int, meta: ModelMetadata
) -> list[Tensor]:
    """The inputs of ``meta``'s model for a table of ``rows`` rows (see the module doc)."""
    if not columns:
        raise InvalidInputError("the table has no columns")
    if rows == 0:
        raise InvalidInputError("the table has no rows")
    specs = {spec.name: spec for spec in meta.inputs}
    if all(name in specs for name in columns):
        return [_input_by_name(name, col, rows, specs[name]) for name, col in columns.items()]
    if len(meta.inputs) == 1:
        return [_input_of_features(columns, meta.inputs[0])]
    unknown = [name for name in columns if name not in specs]
    raise InvalidInputError(
        f"column(s) {', '.join(map(str, unknown))} are not inputs of model '{meta.name}' "
        f"(its inputs: {', '.join(specs)}); name the columns after the inputs"
    )


def _text(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """BYTES values as str where they are UTF-8 (bytes otherwise)."""
    if array.dtype != object:
        return array
    out = np.empty(array.shape, dtype=object)
    for index, item in np.ndenumerate(array):
        if isinstance(item, bytes):
            with contextlib.suppress(UnicodeDecodeError):
                item = item.decode("utf-8")
        out[index] = item
    return out


def _check_rows(name: str, array: npt.NDArray[Any], rows: int) -> None:
    if array.ndim == 0 or array.shape[0] != rows:
        raise ClientError(
            f"output '{name}' has shape {list(array.shape)}, not one row per input row "
            f"({rows}); pass a dict of arrays to get the outputs as they are"
        )


def output_columns(outputs: Mapping[str, npt.NDArray[Any]], rows: int) -> dict[str, Any]:
    """Flat columns, ``rows`` values each: ``name`` or ``name[i]``; an output of more than two
    dimensions is one column holding an array per row."""
    columns: dict[str, Any] = {}
    for name, value in outputs.items():
        _check_rows(name, value, rows)
        array = _text(value)
        if array.ndim == 1:
            columns[name] = array
        elif array.ndim == 2 and array.shape[1] == 1:
            columns[name] = array[:, 0]
        elif array.ndim == 2:
            for i in range(array.shape[1]):
                columns[f"{name}[{i}]"] = array[:, i]
        else:
            column = np.empty(rows, dtype=object)
            column[:] = list(array)
            columns[name] = column
    return columns


def output_rows(outputs: Mapping[str, npt.NDArray[Any]], rows: int) -> list[dict[str, Any]]:
    """One dict per row: output name -> a Python value (one value per row) or list."""
    lists: dict[str, list[Any]] = {}
    for name, value in outputs.items():
        _check_rows(name, value, rows)
        array = _text(value)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        lists[name] = array.tolist()
    return [{name: values[i] for name, values in lists.items()} for i in range(rows)]
