"""Columns to the model's inputs, and its outputs back to columns.

An input takes the column of its name: a scalar column for a ``[-1]`` (or ``[-1, 1]``) input, a
list column (Parquet lists, JSON arrays) for ``[-1, k]`` and deeper. ``--features a,b,c`` fills a
2-D input from scalar columns in that order. A variable dimension takes its size from the first
row of the first file. Outputs become columns: ``label`` for ``[-1]``, ``probabilities_0`` …
``probabilities_{k-1}`` for ``[-1, k]`` (deeper outputs are flattened in row-major order).

A row that cannot become the model's input (a null, a value that does not parse as the input's
datatype, a list of the wrong length) is a bad row with a reason; the others go on. Conversion
is vectorised; only a column that fails as a whole is looked at value by value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modelserve.codecs.tensors import V2_TO_NUMPY
from modelserve.offline.batch.errors import BatchError
from modelserve.types import TensorSpec

__all__ = [
    "Binding",
    "ColumnPlan",
    "arrow_type",
    "output_columns",
    "plan_columns",
    "to_arrays",
]

Arrays = dict[str, npt.NDArray[Any]]
Errors = dict[int, str]
"""Row (0-based, within a shard) -> why it is bad; the first reason found wins."""


@dataclass(frozen=True, slots=True)
class Binding:
    """Where one model input comes from."""

    input: str
    datatype: str
    columns: tuple[str, ...]
    row_shape: tuple[int, ...]
    """One row's shape (no batch dimension); every dimension fixed."""
    stacked: bool
    """True: ``columns`` are scalars stacked along the last dimension (``--features``)."""


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    bindings: tuple[Binding, ...]
    keep: tuple[str, ...]
    keep_types: tuple[Any, ...]
    """Arrow types of the kept columns, as in the first file (every part file gets them)."""
    output_names: tuple[str, ...]
    """Output column names known before running (outputs with fixed shapes)."""

    def read_columns(self) -> list[str]:
        names: list[str] = []
        for binding in self.bindings:
            names += [c for c in binding.columns if c not in names]
        return names + [c for c in self.keep if c not in names]

    def read_types(self) -> dict[str, Any]:
        """The Arrow type each column is read as from CSV and JSONL."""
        types = dict(zip(self.keep, self.keep_types, strict=True))
        for binding in self.bindings:
            leaf = arrow_type(binding.datatype)
            for column in binding.columns:
                if binding.stacked or not binding.row_shape or binding.row_shape == (1,):
                    types[column] = leaf
                else:
                    types[column] = _nested_type(leaf, len(binding.row_shape))
        return types

    def describe(self) -> dict[str, Any]:
        """A JSON form for the manifest (and its fingerprint)."""
        return {
            "inputs": [
                {
                    "input": b.input,
                    "columns": list(b.columns),
                    "shape": list(b.row_shape),
                    "features": b.stacked,
                }
                for b in self.bindings
            ],
            "keep": {name: str(t) for name, t in zip(self.keep, self.keep_types, strict=True)},
        }


def arrow_type(datatype: str) -> Any:
    """The Arrow type a column is converted to for an input of ``datatype``."""
    import pyarrow as pa

    if datatype == "BYTES":
        return pa.binary()
    if datatype == "FP16":
        return pa.float32()  # parsed as FP32, narrowed by numpy
    return pa.from_numpy_dtype(V2_TO_NUMPY[datatype])


def _nested_type(leaf: Any, depth: int) -> Any:
    import pyarrow as pa

    for _ in range(depth):
        leaf = pa.list_(leaf)
    return leaf


# ---- planning ---------------------------------------------------------------------------------


def plan_columns(
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    batched: bool,
    features: Mapping[str, Sequence[str]],
    keep: Sequence[str],
    sample: Any,
) -> ColumnPlan:
    """Bind every model input to columns of ``sample`` (the first rows of the first file)."""
    known = list(sample.schema.names)
    unknown = [name for name in features if name not in {s.name for s in inputs}]
    if unknown:
        names = [s.name for s in inputs]
        raise BatchError(f"--features names input '{unknown[0]}'; the model's inputs are {names}")
    bindings = []
    for spec in inputs:
        trailing = spec.shape[1:] if batched else spec.shape
        if spec.name in features:
            bindings.append(_feature_binding(spec, trailing, list(features[spec.name]), known))
        else:
            bindings.append(_named_binding(spec, trailing, sample, known))
    for binding in bindings:
        for column in binding.columns:
            _check_castable(sample.column(column), binding, column)
    missing = [name for name in keep if name not in known]
    if missing:
        raise BatchError(f"--keep-columns: no column {missing[0]!r}; the columns are {known}")
    keep_types = tuple(_keep_type(sample.schema.field(name).type) for name in keep)
    output_names: list[str] = []
    for spec in outputs:
        trailing = spec.shape[1:] if batched else spec.shape
        if any(d < 0 for d in trailing):
            continue
        output_names += _column_names(spec.name, int(np.prod(trailing, dtype=np.int64)), trailing)
    clash = sorted(set(output_names) & set(keep))
    if clash:
        raise BatchError(f"kept column {clash[0]!r} has the name of an output column")
    return ColumnPlan(tuple(bindings), tuple(keep), keep_types, tuple(output_names))


def _feature_binding(
    spec: TensorSpec, trailing: tuple[int, ...], columns: list[str], known: list[str]
) -> Binding:
    if len(trailing) != 1:
        raise BatchError(
            f"--features fills a 2-D input; input '{spec.name}' has shape {list(spec.shape)}"
        )
    if trailing[0] not in (-1, len(columns)):
        raise BatchError(
            f"input '{spec.name}' takes {trailing[0]} features; --features names {len(columns)}"
        )
    if len(set(columns)) != len(columns):
        raise BatchError(f"--features for '{spec.name}' names a column twice")
    for column in columns:
        if column not in known:
            raise BatchError(f"--features: no column {column!r}; the columns are {known}")
    return Binding(spec.name, spec.datatype, tuple(columns), (len(columns),), True)


def _named_binding(
    spec: TensorSpec, trailing: tuple[int, ...], sample: Any, known: list[str]
) -> Binding:
    import pyarrow.types as pat

    if spec.name not in known:
        hint = (
            f"; name the columns that fill it with --features {spec.name}=a,b,..."
            if len(trailing) == 1
            else ""
        )
        raise BatchError(f"no column for input '{spec.name}' (the columns are {known}){hint}")
    column = sample.column(spec.name)
    depth, kind = 0, column.type
    while pat.is_list(kind) or pat.is_large_list(kind) or pat.is_fixed_size_list(kind):
        depth, kind = depth + 1, kind.value_type
    if depth == 0:
        if trailing not in ((), (1,), (-1,)):
            raise BatchError(
                f"column '{spec.name}' holds one value per row; input '{spec.name}' has shape "
                f"{list(spec.shape)} (use --features for several columns)"
            )
        return Binding(spec.name, spec.datatype, (spec.name,), tuple(1 for _ in trailing), False)
    if depth != len(trailing):
        raise BatchError(
            f"column '{spec.name}' holds lists nested {depth} deep; input '{spec.name}' has "
            f"shape {list(spec.shape)}"
        )
    shape = _first_row_shape(column, spec.name, depth)
    resolved = []
    for want, got in zip(trailing, shape, strict=True):
        if want not in (-1, got):
            raise BatchError(
                f"column '{spec.name}' holds lists of shape {list(shape)} in its first row; "
                f"input '{spec.name}' has shape {list(spec.shape)}"
            )
        resolved.append(got)
    return Binding(spec.name, spec.datatype, (spec.name,), tuple(resolved), False)


def _first_row_shape(column: Any, name: str, depth: int) -> tuple[int, ...]:
    for value in column.to_pylist():
        if value is None:
            continue
        shape: list[int] = []
        for _ in range(depth):
            if not value:
                return (*shape, 0, *([0] * (depth - len(shape) - 1)))
            shape.append(len(value))
            value = value[0]
        return tuple(shape)
    raise BatchError(f"column '{name}' has no value in the first rows")


def _check_castable(column: Any, binding: Binding, name: str) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    while (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    ):
        kind = kind.value_type
    if pa.types.is_null(kind):
        return
    try:
        pc.cast(pa.array([], kind), arrow_type(binding.datatype))
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError):
        raise BatchError(
            f"column '{name}' is {kind}; it cannot become input '{binding.input}' "
            f"({binding.datatype})"
        ) from None


def _keep_type(kind: Any) -> Any:
    import pyarrow as pa

    return pa.string() if pa.types.is_null(kind) else kind


# ---- rows to arrays ---------------------------------------------------------------------------


def to_arrays(table: Any, plan: ColumnPlan, errors: Errors) -> tuple[Arrays, npt.NDArray[Any]]:
    """The model's inputs for the good rows, and the indices of those rows. Bad rows are added
    to ``errors``."""
    rows = table.num_rows
    full: Arrays = {}
    for binding in plan.bindings:
        if binding.stacked:
            dtype = V2_TO_NUMPY[binding.datatype]
            out = np.empty((rows, len(binding.columns)), dtype=dtype)
            for j, name in enumerate(binding.columns):
                out[:, j] = _scalar(table.column(name), binding, name, errors)
            full[binding.input] = out
        elif binding.row_shape in ((), (1,)):
            values = _scalar(table.column(binding.input), binding, binding.input, errors)
            full[binding.input] = values.reshape((rows, *binding.row_shape))
        else:
            full[binding.input] = _nested(table.column(binding.input), binding, errors)
    if not errors:
        return full, np.arange(rows)
    good = np.ones(rows, dtype=bool)
    good[[row for row in errors if row < rows]] = False
    keep = np.flatnonzero(good)
    return {name: array[keep] for name, array in full.items()}, keep


def _combined(column: Any) -> Any:
    return column.combine_chunks() if hasattr(column, "combine_chunks") else column


def _mark(errors: Errors, rows: Any, reason: str) -> None:
    for row in np.asarray(rows).tolist():
        errors.setdefault(int(row), reason)


def _cast(array: Any, binding: Binding, name: str, errors: Errors, parents: Any = None) -> Any:
    """``array`` as the input's Arrow type; values that do not convert become nulls and their
    rows (``parents[i]`` for element i, else i) bad rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    target = arrow_type(binding.datatype)
    if array.type.equals(target):
        return array
    # A number into a float input rounds, as numpy and the server's JSON decoding do (an
    # int64 above 2**24 into FP32); everything else must convert exactly.
    rounding = pa.types.is_floating(target) and (
        pa.types.is_integer(array.type) or pa.types.is_floating(array.type)
    )
    try:
        return pc.cast(array, target, safe=not rounding)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    values: list[Any] = []
    for index, value in enumerate(array):
        if not value.is_valid:
            values.append(None)
            continue
        try:
            values.append(pc.cast(pa.array([value.as_py()], array.type), target)[0].as_py())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            row = index if parents is None else int(parents[index])
            detail = str(exc).split("\n", 1)[0]
            errors.setdefault(
                row,
                f"column '{name}': {value.as_py()!r} is not {binding.datatype} ({detail})",
            )
            values.append(None)
    return pa.array(values, target)


def _numpy(array: Any, datatype: str) -> npt.NDArray[Any]:
    import pyarrow.compute as pc

    dtype = V2_TO_NUMPY[datatype]
    if datatype == "BYTES":
        out = array.to_numpy(zero_copy_only=False)
        if array.null_count:
            out[np.asarray(array.is_null())] = b""
        return np.asarray(out, dtype=object)
    if array.null_count:
        array = pc.fill_null(array, 0)
    values = array.to_numpy(zero_copy_only=False)
    return np.asarray(values).astype(dtype, copy=False)


def _scalar(column: Any, binding: Binding, name: str, errors: Errors) -> npt.NDArray[Any]:
    array = _combined(column)
    if array.null_count:
        _mark(errors, np.flatnonzero(np.asarray(array.is_null())), f"column '{name}' is empty")
    return _numpy(_cast(array, binding, name, errors), binding.datatype)


def _nested(column: Any, binding: Binding, errors: Errors) -> npt.NDArray[Any]:
    """A list column as an array (rows, *row_shape); rows whose lists have another shape, or
    hold a null, are bad rows."""
    import pyarrow.compute as pc

    name = binding.input
    array = _combined(column)
    rows = len(array)
    if array.null_count:
        _mark(errors, np.flatnonzero(np.asarray(array.is_null())), f"column '{name}' is empty")
    fits = np.ones(rows, dtype=bool)
    parents = np.arange(rows)
    level = array
    for depth, want in enumerate(binding.row_shape):
        lengths = pc.fill_null(pc.list_value_length(level), 0).to_numpy(zero_copy_only=False)
        wrong = lengths != want
        if wrong.any():
            shape = list(binding.row_shape)
            for row in np.unique(parents[wrong]).tolist():
                if fits[row]:
                    errors.setdefault(
                        row,
                        f"column '{name}': the row's list has another shape than {shape} "
                        f"(found a list of {lengths[np.argmax(parents == row)]} at depth {depth})",
                    )
            fits[parents[wrong]] = False
        parents = np.repeat(parents, lengths)
        level = level.flatten()
    leaves = _cast(level, binding, name, errors, parents)
    if leaves.null_count:
        nulls = np.flatnonzero(np.asarray(leaves.is_null()))
        _mark(errors, parents[nulls], f"column '{name}' holds an empty value")
    values = _numpy(leaves, binding.datatype)
    out = np.zeros((rows, *binding.row_shape), dtype=values.dtype)
    good = fits.copy()
    good[[r for r in errors if r < rows]] = False
    if good.any():
        out[good] = values[good[parents]].reshape((-1, *binding.row_shape))
    return out


# ---- outputs to columns -----------------------------------------------------------------------


def _column_names(name: str, width: int, trailing: tuple[int, ...]) -> list[str]:
    if not trailing:
        return [name]
    return [f"{name}_{j}" for j in range(width)]


def output_columns(outputs: Sequence[TensorSpec], arrays: Arrays) -> list[tuple[str, Any]]:
    """The model's outputs as (name, Arrow array) columns, in the model's output order."""
    columns: list[tuple[str, Any]] = []
    for spec in outputs:
        array = arrays[spec.name]
        if array.ndim <= 1:
            columns.append((spec.name, _arrow(array.reshape(-1), spec.datatype)))
            continue
        flat = array.reshape(array.shape[0], -1)
        for j, name in enumerate(_column_names(spec.name, flat.shape[1], array.shape[1:])):
            columns.append((name, _arrow(np.ascontiguousarray(flat[:, j]), spec.datatype)))
    return columns


def _arrow(values: npt.NDArray[Any], datatype: str) -> Any:
    import pyarrow as pa

    if datatype == "BYTES":
        binary = pa.array(values.tolist(), pa.binary())
        try:
            return binary.cast(pa.string())
        except pa.ArrowInvalid:  # not UTF-8: stays binary
            return binary
    if datatype == "FP16":
        return pa.array(values.astype(np.float32))
    return pa.array(values)
