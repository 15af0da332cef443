"""Every input kind becomes the right tensors, and the answer comes back in the same kind."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelserve.client.errors import ClientError, InvalidInputError
from modelserve.client.inputs import Kind, mirror, prepare
from modelserve.client.results import Outputs, PredictedArray, Rows
from modelserve.types import InferenceResponse, ModelMetadata, Tensor, TensorSpec

IRIS = ModelMetadata(
    "iris",
    ("1",),
    "onnxruntime_onnx",
    (TensorSpec("input", "FP32", (-1, 4)),),
    (TensorSpec("label", "INT64", (-1,)), TensorSpec("probabilities", "FP32", (-1, 3))),
)
TWO = ModelMetadata(
    "two",
    ("1",),
    "python",
    (TensorSpec("a", "FP32", (-1, 1)), TensorSpec("b", "BYTES", (-1,))),
    (TensorSpec("y", "FP32", (-1, 1)),),
)
X = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]])


def _answer(rows: int) -> InferenceResponse:
    label = np.arange(rows, dtype=np.int64)
    probs = np.tile(np.array([0.7, 0.2, 0.1], dtype=np.float32), (rows, 1))
    return InferenceResponse(
        "iris",
        "1",
        (
            Tensor("label", "INT64", label.shape, label),
            Tensor("probabilities", "FP32", probs.shape, probs),
        ),
    )


def test_array_goes_to_the_one_input_cast_to_its_datatype() -> None:
    prepared = prepare(X, IRIS)
    (tensor,) = prepared.inputs
    assert (tensor.name, tensor.datatype, tensor.shape) == ("input", "FP32", (2, 4))
    assert tensor.data.dtype == np.float32
    out = mirror(prepared, _answer(2), "rid")
    assert isinstance(out, Outputs) and list(out) == ["label", "probabilities"]
    assert (out.id, out.model_name, out.model_version) == ("rid", "iris", "1")


def test_one_row_without_batch_dimension_comes_back_without_it() -> None:
    prepared = prepare(X[0], IRIS)
    assert prepared.inputs[0].shape == (1, 4) and prepared.squeeze
    out = mirror(prepared, _answer(1), "rid")
    assert out["label"].shape == () and out["probabilities"].shape == (3,)


def test_one_output_gives_an_array_with_the_calls_identity() -> None:
    prepared = prepare(X, IRIS)
    answer = _answer(2)
    answer.outputs = answer.outputs[:1]
    out = mirror(prepared, answer, "rid")
    assert isinstance(out, PredictedArray) and out.tolist() == [0, 1]
    assert out.id == "rid" and out.model_version == "1"
    assert type(np.asarray(out)) is np.ndarray


def test_array_for_a_model_with_two_inputs_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="has 2 inputs"):
        prepare(np.ones((2, 1)), TWO)


def test_dict_keeps_names_and_casts_known_inputs_only() -> None:
    prepared = prepare({"a": [[1], [2]], "b": np.array(["x", "y"]), "extra": np.int8([1])}, TWO)
    assert prepared.kind is Kind.DICT
    assert [(t.name, t.datatype) for t in prepared.inputs] == [
        ("a", "FP32"),
        ("b", "BYTES"),
        ("extra", "INT8"),
    ]


def test_frame_by_feature_columns_and_back_with_its_index() -> None:
    frame = pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"], index=[10, 11])
    prepared = prepare(frame, IRIS)
    assert prepared.kind is Kind.FRAME and prepared.inputs[0].shape == (2, 4)
    out = mirror(prepared, _answer(2), "rid")
    assert isinstance(out, pd.DataFrame) and list(out.index) == [10, 11]
    assert list(out.columns) == [
        "label",
        "probabilities[0]",
        "probabilities[1]",
        "probabilities[2]",
    ]
    assert out.id == "rid" and out.model_version == "1"
    assert out.head(1).id == "rid", "pandas carries the identity through slicing"


def test_frame_by_input_names() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    prepared = prepare(frame, TWO)
    a, b = prepared.inputs
    assert (a.shape, a.datatype) == ((2, 1), "FP32")
    assert (b.shape, b.datatype) == ((2,), "BYTES") and b.data.tolist() == ["x", "y"]


def test_frame_column_of_lists_is_a_2d_input() -> None:
    frame = pd.DataFrame({"input": [list(row) for row in X]})
    (tensor,) = prepare(frame, IRIS).inputs
    assert tensor.shape == (2, 4) and tensor.data.dtype == np.float32


def test_frame_with_wrong_width_or_unknown_columns() -> None:
    with pytest.raises(InvalidInputError, match="takes 4 features; the table has 3"):
        prepare(pd.DataFrame(X[:, :3]), IRIS)
    with pytest.raises(InvalidInputError, match="not inputs of model 'two'"):
        prepare(pd.DataFrame({"a": [1.0], "c": [2.0]}), TWO)


def test_rows_and_records() -> None:
    prepared = prepare(X.tolist(), IRIS)
    assert prepared.kind is Kind.ROWS and prepared.inputs[0].shape == (2, 4)
    out = mirror(prepared, _answer(2), "rid")
    assert isinstance(out, Rows) and out.id == "rid"
    assert out[1] == {"label": 1, "probabilities": pytest.approx([0.7, 0.2, 0.1])}
    records = [{"a": 1.0, "b": "x"}, {"b": "y", "a": 2.0}]
    prepared = prepare(records, TWO)
    assert prepared.kind is Kind.RECORDS and prepared.inputs[0].shape == (2, 1)
    with pytest.raises(InvalidInputError, match="record 1"):
        prepare([{"a": 1.0}, {"b": "x"}], TWO)


def test_outputs_without_one_row_per_input_row_cannot_be_rows() -> None:
    prepared = prepare(X.tolist(), IRIS)
    with pytest.raises(ClientError, match="not one row per input row"):
        mirror(prepared, _answer(3), "rid")


def test_bytes_outputs_come_back_as_text_in_rows() -> None:
    prepared = prepare([[1.0, 2.0, 3.0, 4.0]], IRIS)
    names = np.array([b"setosa"], dtype=object)
    answer = InferenceResponse("iris", "1", (Tensor("name", "BYTES", (1,), names),))
    assert mirror(prepared, answer, "rid")[0] == {"name": "setosa"}


def test_nothing_and_strings_are_refused() -> None:
    for bad in ([], {}, "text"):
        with pytest.raises(InvalidInputError):
            prepare(bad, IRIS)
