"""Columns to inputs (by name, lists, --features), bad values as bad rows, outputs to columns."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from modelserve.offline.batch.columns import output_columns, plan_columns, to_arrays
from modelserve.offline.batch.errors import BatchError
from modelserve.types import TensorSpec

VECTOR = TensorSpec("input", "FP32", (-1, 4))
OUTPUTS = (TensorSpec("label", "INT64", (-1,)), TensorSpec("probabilities", "FP32", (-1, 3)))


def _sample(**columns: list[object]) -> pa.Table:
    return pa.table(columns)


def test_features_fill_a_2d_input_in_order_and_bad_values_are_bad_rows() -> None:
    table = _sample(
        id=[1, 2, 3, 4],
        a=["1", "x", "3", "4"],
        b=[1.0, 2.0, None, 4.0],
        c=[1, 2, 3, 4],
        d=[0.5, 0.5, 0.5, 0.5],
    )
    plan = plan_columns((VECTOR,), OUTPUTS, True, {"input": ["d", "c", "b", "a"]}, ["id"], table)
    assert plan.read_columns() == ["d", "c", "b", "a", "id"]
    errors: dict[int, str] = {}
    arrays, good = to_arrays(table, plan, errors)
    assert good.tolist() == [0, 3]
    assert arrays["input"].dtype == np.float32
    assert arrays["input"].tolist() == [[0.5, 1, 1, 1], [0.5, 4, 4, 4]]
    assert "'x'" in errors[1] and "FP32" in errors[1]
    assert errors[2] == "column 'b' is empty"


def test_list_columns_map_by_name_and_rows_of_another_length_are_bad() -> None:
    table = _sample(input=[[1, 2, 3, 4], [1, 2, 3], None, [1, 2, None, 4], [5, 6, 7, 8]])
    plan = plan_columns((VECTOR,), OUTPUTS, True, {}, [], table)
    assert plan.bindings[0].row_shape == (4,)
    errors: dict[int, str] = {}
    arrays, good = to_arrays(table, plan, errors)
    assert good.tolist() == [0, 4]
    assert arrays["input"].tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert sorted(errors) == [1, 2, 3]
    assert "another shape" in errors[1]


def test_a_variable_dimension_takes_the_first_rows_size() -> None:
    spec = TensorSpec("tokens", "INT64", (-1, -1))
    table = _sample(tokens=[[1, 2], [3, 4], [5, 6, 7]])
    plan = plan_columns((spec,), OUTPUTS, True, {}, [], table)
    errors: dict[int, str] = {}
    _, good = to_arrays(table, plan, errors)
    assert plan.bindings[0].row_shape == (2,)
    assert good.tolist() == [0, 1] and list(errors) == [2]


def test_scalar_inputs_and_bytes() -> None:
    specs = (TensorSpec("x", "FP64", (-1,)), TensorSpec("s", "BYTES", (-1, 1)))
    table = _sample(x=[1, 2], s=["a", "é"])
    plan = plan_columns(specs, OUTPUTS, True, {}, [], table)
    arrays, good = to_arrays(table, plan, {})
    assert arrays["x"].tolist() == [1.0, 2.0]
    assert arrays["s"].tolist() == [[b"a"], ["é".encode()]]
    assert good.tolist() == [0, 1]


@pytest.mark.parametrize(
    ("features", "keep", "columns", "message"),
    [
        ({}, [], {"a": [1.0]}, "no column for input 'input'.*--features input="),
        ({"input": ["a", "b"]}, [], {"a": [1.0], "b": [1.0]}, "takes 4 features"),
        ({"input": ["a", "b", "c", "zz"]}, [], {"a": [1], "b": [1], "c": [1]}, "no column 'zz'"),
        ({"other": ["a"]}, [], {"a": [1]}, "names input 'other'"),
        ({}, ["nope"], {"input": [[1.0, 2, 3, 4]]}, "--keep-columns: no column 'nope'"),
        ({}, ["label"], {"input": [[1.0, 2, 3, 4]], "label": [1]}, "name of an output"),
        ({}, [], {"input": [[[1.0]]]}, "nested 2 deep"),
        ({}, [], {"input": [[1.0, 2.0]]}, r"shape \[2\]"),
        ({}, [], {"input": [[{"x": 1}] * 4]}, "cannot become input"),
    ],
)
def test_mappings_that_cannot_work_are_refused_before_running(
    features: dict[str, list[str]], keep: list[str], columns: dict[str, list[object]], message: str
) -> None:
    with pytest.raises(BatchError, match=message):
        plan_columns((VECTOR,), OUTPUTS, True, features, keep, pa.table(columns))


def test_outputs_become_columns() -> None:
    arrays = {
        "label": np.array([2, 0], dtype=np.int64),
        "probabilities": np.array([[0.1, 0.2, 0.7], [0.8, 0.1, 0.1]], dtype=np.float32),
    }
    columns = dict(output_columns(OUTPUTS, arrays))
    assert list(columns) == ["label", "probabilities_0", "probabilities_1", "probabilities_2"]
    assert columns["probabilities_2"].type == pa.float32()
    assert columns["probabilities_2"].to_pylist() == pytest.approx([0.7, 0.1])
    text = dict(output_columns((TensorSpec("t", "BYTES", (-1,)),), {"t": np.array([b"ok"])}))
    assert text["t"].type == pa.string()
