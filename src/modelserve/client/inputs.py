"""What ``predict`` accepts, and the same kind back.

- **a numpy array** (or anything ``np.asarray`` takes) goes to the model's one input; a single
  row without its batch dimension gets one. Back: the array of the one output (a
  ``PredictedArray``), or ``Outputs`` when the model answers several.
- **a dict of name -> array**: those inputs. Back: ``Outputs`` (a dict).
- **a pandas DataFrame**: its columns by input name, or as the features of the one input
  (tables.py). Back: a ``PredictionFrame``, one row per input row, with the same index.
- **a list of rows** (lists of values): the one input, ``[rows, values]``. Back: ``Rows``, a
  dict of outputs per row.
- **a list of records** (dicts): a table, as a DataFrame is. Back: ``Rows``.

Arrays are cast to the datatype in the model's metadata (convert.py).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import numpy.typing as npt

from modelserve.client.convert import convert_array
from modelserve.client.errors import InvalidInputError
from modelserve.client.results import Outputs, PredictedArray, Rows
from modelserve.client.tables import column_array, output_rows, table_inputs
from modelserve.types import InferenceResponse, ModelMetadata, Tensor

__all__ = ["Kind", "Prepared", "mirror", "prepare", "records_columns"]


class Kind(Enum):
    ARRAY = "array"
    DICT = "dict"
    FRAME = "frame"
    ROWS = "rows"
    RECORDS = "records"


@dataclass(slots=True)
class Prepared:
    """The inputs to send, and how to shape the answer."""

    kind: Kind
    inputs: list[Tensor]
    rows: int = 0
    index: Any = None
    """A DataFrame's index, given back on the output frame."""
    squeeze: bool = False
    """One row was given without its batch dimension: take it off the outputs too."""


def _is_frame(value: object) -> bool:
    pandas = sys.modules.get("pandas")  # a DataFrame exists only if pandas was imported
    return pandas is not None and isinstance(value, pandas.DataFrame)


def records_columns(records: Sequence[Mapping[str, Any]]) -> dict[str, npt.NDArray[Any]]:
    """A list of dicts with the same keys as columns."""
    keys = list(records[0])
    for position, record in enumerate(records):
        if set(record) != set(keys):
            raise InvalidInputError(
                f"record {position} has keys {sorted(record)}, record 0 has {sorted(keys)}"
            )
    return {str(key): column_array([record[key] for record in records]) for key in keys}


def _tensor(name: str, value: Any, datatype: str | None) -> Tensor:
    datatype, array = convert_array(name, value, datatype)
    return Tensor(name, datatype, tuple(int(d) for d in array.shape), array)


def _single_input(value: Any, meta: ModelMetadata, kind: Kind) -> Prepared:
    if len(meta.inputs) != 1:
        names = ", ".join(spec.name for spec in meta.inputs)
        raise InvalidInputError(
            f"model '{meta.name}' has {len(meta.inputs)} inputs ({names}); pass a dict of "
            "arrays by input name (or a table whose columns are named after them)"
        )
    spec = meta.inputs[0]
    tensor = _tensor(spec.name, value, spec.datatype)
    squeeze = False
    if kind is Kind.ARRAY and len(spec.shape) >= 2 and tensor.data.ndim == len(spec.shape) - 1:
        tensor = _tensor(spec.name, tensor.data[np.newaxis], spec.datatype)
        squeeze = True
    rows = tensor.shape[0] if tensor.shape else 0
    return Prepared(kind, [tensor], rows=rows, squeeze=squeeze)


def prepare(value: Any, meta: ModelMetadata) -> Prepared:
    """The request for ``value`` (see the table above) to the model ``meta`` describes."""
    if isinstance(value, Mapping):
        specs = {spec.name: spec.datatype for spec in meta.inputs}
        if not value:
            raise InvalidInputError("no inputs given")
        inputs = [_tensor(str(name), array, specs.get(str(name))) for name, array in value.items()]
        return Prepared(Kind.DICT, inputs)
    if _is_frame(value):
        from modelserve.client.frames import frame_columns

        columns, rows, index = frame_columns(value)
        return Prepared(Kind.FRAME, table_inputs(columns, rows, meta), rows=rows, index=index)
    if isinstance(value, list | tuple) and not isinstance(value, np.ndarray):
        if not value:
            raise InvalidInputError("no rows given")
        if all(isinstance(row, Mapping) for row in value):
            columns = records_columns(value)
            return Prepared(Kind.RECORDS, table_inputs(columns, len(value), meta), rows=len(value))
        return _single_input(value, meta, Kind.ROWS)
    if isinstance(value, str | bytes):
        raise InvalidInputError(
            "predict takes a numpy array, a dict of arrays, a DataFrame or a list of rows; "
            f"got {type(value).__name__}"
        )
    return _single_input(value, meta, Kind.ARRAY)


def mirror(prepared: Prepared, response: InferenceResponse, request_id: str) -> Any:
    """The outputs of ``response`` in the kind ``prepared`` was given."""
    outputs: dict[str, npt.NDArray[Any]] = {t.name: t.data for t in response.outputs}
    answered = dict(outputs)
    ident: dict[str, Any] = {
        "id": request_id,
        "model_name": response.model_name,
        "model_version": response.model_version,
    }
    kind = prepared.kind
    if kind is Kind.DICT:
        return Outputs(outputs, **ident)
    if kind is Kind.ARRAY:
        if prepared.squeeze:
            outputs = {
                name: array[0] if array.ndim and array.shape[0] == 1 else array
                for name, array in outputs.items()
            }
        if len(outputs) == 1:
            (only,) = outputs.values()
            return PredictedArray.wrap(only, outputs=answered, **ident)
        return Outputs(outputs, outputs=answered, **ident)
    if kind is Kind.FRAME:
        from modelserve.client.frames import to_frame

        return to_frame(outputs, prepared.rows, prepared.index, **ident)
    return Rows(output_rows(outputs, prepared.rows), outputs=answered, **ident)
