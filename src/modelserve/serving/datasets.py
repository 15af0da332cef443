"""Tabular data files as named columns, and the model inputs built from them: sample rows for
``modelserve convert``, held-out data for the validation gate.

Formats, by file ending: ``.csv`` (a header row, then one row per line), ``.parquet`` (needs
pyarrow: ``pip install "modelserve[parquet]"``), ``.npz`` (one array per column, no pickle),
``.npy`` (one array: the rows of a single input), ``.jsonl`` (one JSON object per line; a value
may be a list, making a 2-D column).

A model's inputs are taken from the columns named after them; a model with one input whose name
is not a column gets every other column (the label and ignored ones excepted), in file order, as
the columns of a 2-D array.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from modelserve.codecs.tensors import V2_TO_NUMPY
from modelserve.types import TensorSpec

__all__ = ["DataError", "Table", "features_for", "read_table"]

FORMATS = (".csv", ".parquet", ".npz", ".npy", ".jsonl")
SINGLE_ARRAY = "input"
"""The column name of an ``.npy`` file's array."""


class DataError(Exception):
    """A data file cannot be read or does not fit the model; the message says why."""


@dataclass(frozen=True, slots=True)
class Table:
    columns: dict[str, npt.NDArray[Any]]
    """Column name -> array whose first dimension is the rows (file order kept)."""
    rows: int
    source: Path

    def head(self, rows: int) -> Table:
        if rows >= self.rows:
            return self
        return Table({k: v[:rows] for k, v in self.columns.items()}, rows, self.source)


def _column(values: list[Any], name: str, path: Path) -> npt.NDArray[Any]:
    """A list of scalars (or of equal-length lists) as an array: bool, int64 or float64 when
    the values are (nulls in numbers become NaN), else str objects."""
    try:
        array = np.asarray(values)
    except ValueError:
        raise DataError(f"{path}: column '{name}' mixes lists of different lengths") from None
    if array.dtype.kind in "biuf":
        return array
    try:
        return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        pass
    out = np.empty(len(values), dtype=object)
    out[:] = ["" if v is None else str(v) for v in values]
    return out


def _read_csv(path: Path) -> dict[str, npt.NDArray[Any]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{path}: empty file; expected a header row") from None
        rows = [row for row in reader if row]
    if len(set(header)) != len(header):
        raise DataError(f"{path}: duplicate column names in the header")
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise DataError(
                f"{path}: line {number} has {len(row)} fields, the header {len(header)}"
            )
    columns: dict[str, npt.NDArray[Any]] = {}
    for index, name in enumerate(header):
        texts = [row[index] for row in rows]
        try:
            numbers = np.asarray([float(t) for t in texts], dtype=np.float64)
        except ValueError:
            columns[name] = np.asarray(texts, dtype=object)
            continue
        is_int = all(t.strip().lstrip("+-").isdigit() for t in texts)
        columns[name] = numbers.astype(np.int64) if is_int and texts else numbers
    return columns


def _read_jsonl(path: Path) -> dict[str, npt.NDArray[Any]]:
    records: list[dict[str, Any]] = []
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise DataError(f"{path}: line {number} is not JSON: {exc}") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}: line {number} is not a JSON object")
            records.append(record)
    names: list[str] = []
    for record in records:
        names.extend(k for k in record if k not in names)
    columns = {}
    for name in names:
        missing = [i + 1 for i, r in enumerate(records) if name not in r]
        if missing:
            raise DataError(f"{path}: record {missing[0]} has no '{name}'")
        columns[name] = _column([r[name] for r in records], name, path)
    return columns


def _read_npz(path: Path) -> dict[str, npt.NDArray[Any]]:
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def _read_parquet(path: Path) -> dict[str, npt.NDArray[Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            f"{path}: reading Parquet needs pyarrow (pip install 'modelserve[parquet]')"
        ) from None
    table = pq.read_table(path)
    columns = {}
    for name, chunked in zip(table.column_names, table.columns, strict=True):
        values = chunked.to_pylist()
        columns[name] = _column(values, name, path)
    return columns


def read_table(path: Path) -> Table:
    """Read a data file (see the module doc for the formats); DataError with the reason."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"{path}: unknown data format; use one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        if suffix == ".csv":
            columns = _read_csv(path)
        elif suffix == ".jsonl":
            columns = _read_jsonl(path)
        elif suffix == ".npz":
            columns = _read_npz(path)
        elif suffix == ".npy":
            columns = {SINGLE_ARRAY: np.load(path, allow_pickle=False)}
        else:
            columns = _read_parquet(path)
    except DataError:
        raise
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: {exc}") from None
    if not columns:
        raise DataError(f"{path}: no columns")
    lengths = {name: len(array) if array.ndim else 0 for name, array in columns.items()}
    if len(set(lengths.values())) != 1:
        raise DataError(f"{path}: columns have different numbers of rows: {lengths}")
    rows = next(iter(lengths.values()))
    if rows == 0:
        raise DataError(f"{path}: no rows")
    return Table(columns, rows, path)


def _as_input(array: npt.NDArray[Any], spec: TensorSpec, where: str) -> npt.NDArray[Any]:
    if len(spec.shape) == 2 and array.ndim == 1 and spec.shape[1] in (1, -1):
        array = array.reshape(-1, 1)
    if len(spec.shape) == array.ndim + 1 and spec.shape[-1] == 1:
        array = array.reshape(*array.shape, 1)
    if spec.shape and len(spec.shape) != array.ndim:
        raise DataError(
            f"{where}: shape {list(array.shape)} does not fit input '{spec.name}' "
            f"{list(spec.shape)}"
        )
    for got, want in zip(array.shape[1:], spec.shape[1:], strict=False):
        if want != -1 and got != want:
            raise DataError(
                f"{where}: shape {list(array.shape)} does not fit input '{spec.name}' "
                f"{list(spec.shape)}"
            )
    if spec.datatype == "BYTES":
        out = np.empty(array.shape, dtype=object)
        for index, item in np.ndenumerate(array):
            out[index] = item if isinstance(item, bytes) else str(item).encode("utf-8")
        return out
    if array.dtype.kind in "OU":
        raise DataError(f"{where}: input '{spec.name}' is {spec.datatype} but the data are text")
    return array.astype(V2_TO_NUMPY[spec.datatype], copy=False)


def features_for(
    table: Table, inputs: Iterable[TensorSpec], exclude: Iterable[str] = ()
) -> dict[str, npt.NDArray[Any]]:
    """The model's inputs from the table's columns (see the module doc); DataError when the
    columns do not fit."""
    specs = list(inputs)
    skipped = set(exclude)
    where = str(table.source)
    if not specs:
        raise DataError(f"{where}: the model declares no inputs")
    named = [spec for spec in specs if spec.name in table.columns]
    if len(named) == len(specs):
        return {spec.name: _as_input(table.columns[spec.name], spec, where) for spec in specs}
    if len(specs) > 1:
        missing = [spec.name for spec in specs if spec.name not in table.columns]
        raise DataError(
            f"{where}: no column for input(s) {missing}; the columns are {sorted(table.columns)}"
        )
    spec = specs[0]
    rest = [name for name in table.columns if name not in skipped]
    if not rest:
        raise DataError(f"{where}: no feature columns besides {sorted(skipped)}")
    if len(rest) == 1:
        return {spec.name: _as_input(table.columns[rest[0]], spec, where)}
    parts = []
    for name in rest:
        column = table.columns[name]
        if column.dtype.kind in "OU" and spec.datatype != "BYTES":
            raise DataError(f"{where}: column '{name}' is text; the input is {spec.datatype}")
        parts.append(column.reshape(table.rows, -1))
    return {spec.name: _as_input(np.hstack(parts), spec, where)}
