"""Casting to the model's datatype: what a user expects, never a silent change of value."""

from __future__ import annotations

import numpy as np
import pytest

from modelserve.client.convert import convert_array
from modelserve.client.errors import InvalidInputError


def test_float64_goes_to_fp32_and_ints_to_floats() -> None:
    datatype, array = convert_array("x", np.array([[1.5, 2.0]]), "FP32")
    assert datatype == "FP32" and array.dtype == np.float32
    assert convert_array("x", [1, 2], "FP64")[1].dtype == np.float64


def test_whole_floats_go_to_integers_but_fractions_do_not() -> None:
    assert convert_array("x", np.array([1.0, 2.0]), "INT64")[1].tolist() == [1, 2]
    with pytest.raises(InvalidInputError, match="whole numbers"):
        convert_array("x", np.array([1.5]), "INT64")
    with pytest.raises(InvalidInputError, match="whole numbers"):
        convert_array("x", np.array([np.nan]), "INT32")


def test_out_of_range_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="out of its range"):
        convert_array("x", np.array([300]), "UINT8")
    with pytest.raises(InvalidInputError, match="out of its range"):
        convert_array("x", np.array([-1]), "UINT64")
    with pytest.raises(InvalidInputError, match="out of its range"):
        convert_array("x", np.array([1e39]), "FP32")
    assert convert_array("x", np.array([255]), "UINT8")[1].dtype == np.uint8


def test_text_numbers_convert_and_text_does_not() -> None:
    assert convert_array("x", np.array(["1.5", "2"]), "FP32")[1].tolist() == [1.5, 2.0]
    with pytest.raises(InvalidInputError, match="not all numbers"):
        convert_array("x", np.array(["a"]), "FP32")


def test_bytes_and_bool() -> None:
    datatype, array = convert_array("s", np.array(["a", "b"]), "BYTES")
    assert datatype == "BYTES" and array.tolist() == ["a", "b"]
    with pytest.raises(InvalidInputError, match="BYTES"):
        convert_array("s", np.array([1, 2]), "BYTES")
    assert convert_array("b", np.array([0, 1]), "BOOL")[1].dtype == np.bool_
    with pytest.raises(InvalidInputError, match="0 and 1"):
        convert_array("b", np.array([2]), "BOOL")


def test_no_declared_datatype_keeps_the_arrays_own() -> None:
    assert convert_array("x", np.array([1], dtype=np.int16), None)[0] == "INT16"
    assert convert_array("x", np.array(["a"]), None)[0] == "BYTES"
    with pytest.raises(InvalidInputError, match="no V2 datatype"):
        convert_array("x", np.array([1j]), None)


def test_ragged_rows_are_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"different lengths|regular"):
        convert_array("x", [[1.0, 2.0], [3.0]], "FP32")
