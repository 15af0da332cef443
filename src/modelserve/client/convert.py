"""Numpy arrays into the datatype a model declares, without surprises.

Casting follows what a user expects of a model input, not numpy's defaults: float64 data goes to
an FP32 input (the common case: numpy and pandas make float64), integers go to float inputs,
whole-number floats to integer inputs; a value that would change (3.5 into INT64, 300 into UINT8,
1e39 into FP32, text into a number) is an ``InvalidInputError`` naming the input, never a silent
wrap-around. Strings, bytes and Python objects are BYTES. The dtype table is the project's one
(``modelserve.codecs.tensors``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from modelserve.client.errors import InvalidInputError
from modelserve.codecs.tensors import V2_TO_NUMPY, v2_datatype

__all__ = ["convert_array", "datatype_of"]

_NUMERIC = frozenset("biuf")


def datatype_of(name: str, array: npt.NDArray[Any]) -> str:
    """The V2 datatype of an array the model declares nothing about."""
    try:
        return v2_datatype(array.dtype)
    except ValueError:
        raise InvalidInputError(
            f"input '{name}': numpy dtype {array.dtype} has no V2 datatype"
        ) from None


def convert_array(name: str, value: Any, datatype: str | None) -> tuple[str, npt.NDArray[Any]]:
    """``value`` as an array of ``datatype`` (the array's own datatype when None)."""
    array = value if isinstance(value, np.ndarray) else _as_array(name, value)
    if datatype is None:
        datatype = datatype_of(name, array)
    target = V2_TO_NUMPY.get(datatype)
    if target is None:
        raise InvalidInputError(f"input '{name}': unknown datatype {datatype!r}")
    kind = array.dtype.kind
    if datatype == "BYTES":
        if kind in "OSU":
            return datatype, array
        raise InvalidInputError(
            f"input '{name}' is BYTES (text or bytes); got {array.dtype} values"
        )
    if array.dtype == target:
        return datatype, array
    if kind in _NUMERIC:
        return datatype, _numeric(name, array, target, datatype)
    if kind in "OSU":
        try:
            converted = array.astype(target)
        except (ValueError, TypeError, OverflowError):
            raise InvalidInputError(
                f"input '{name}' is {datatype}; its values are not all numbers"
            ) from None
        return datatype, _numeric(name, converted, target, datatype)
    raise InvalidInputError(f"input '{name}' is {datatype}; got {array.dtype} values")


def _as_array(name: str, value: Any) -> npt.NDArray[Any]:
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"input '{name}': not a regular array: {exc}") from None
    if array.dtype.kind == "O" and array.size and isinstance(array.flat[0], list):
        raise InvalidInputError(f"input '{name}': rows of different lengths")
    return array


def _numeric(
    name: str, array: npt.NDArray[Any], target: np.dtype[Any], datatype: str
) -> npt.NDArray[Any]:
    kind = array.dtype.kind
    if target.kind == "b":
        if kind == "b":
            return array
        if array.size and not np.isin(array, (0, 1)).all():
            raise InvalidInputError(f"input '{name}' is BOOL; got values other than 0 and 1")
        return array.astype(target)
    if target.kind in "iu":
        whole = kind != "f" or (np.isfinite(array).all() and (array == np.round(array)).all())
        if not whole:
            raise InvalidInputError(
                f"input '{name}' is {datatype}; its values are not all whole numbers"
            )
        if array.size and kind in "iuf":
            info = np.iinfo(target)
            low, high = array.min(), array.max()
            if low < info.min or high > info.max:
                raise InvalidInputError(
                    f"input '{name}' is {datatype}; a value is out of its range "
                    f"[{info.min}, {info.max}]"
                )
        return array.astype(target)
    with np.errstate(over="raise", invalid="ignore"):
        try:
            return array.astype(target)
        except FloatingPointError:
            raise InvalidInputError(
                f"input '{name}' is {datatype}; a value is out of its range"
            ) from None
