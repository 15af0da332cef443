"""Tree graphs rewritten to decide in float64 on the native thresholds."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from modelserve.errors import ConversionError
from modelserve.runtimes.onnx_trees import with_exact_thresholds

THRESHOLD = 0.1  # not a float32: float32(0.1) > 0.1


def stump() -> bytes:
    """x[0] <= threshold ? 1 : 2, as a float32 TreeEnsembleRegressor."""
    node = helper.make_node(
        "TreeEnsembleRegressor",
        ["input"],
        ["variable"],
        domain="ai.onnx.ml",
        n_targets=1,
        nodes_treeids=[0, 0, 0],
        nodes_nodeids=[0, 1, 2],
        nodes_featureids=[0, 0, 0],
        nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"],
        nodes_values=[THRESHOLD, 0.0, 0.0],
        nodes_truenodeids=[1, 0, 0],
        nodes_falsenodeids=[2, 0, 0],
        target_treeids=[0, 0],
        target_nodeids=[1, 2],
        target_ids=[0, 0],
        target_weights=[1.0, 2.0],
    )
    graph = helper.make_graph(
        [node],
        "stump",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 1])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)]
    )
    model.ir_version = 8
    return bytes(model.SerializeToString())


def run(model: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"input": x})[0]).ravel()


def test_float64_input_decides_like_a_float64_model() -> None:
    between = (THRESHOLD + float(np.float32(THRESHOLD))) / 2  # 0.1 < x <= float32(0.1)
    x = np.array([[between]])
    assert run(stump(), x.astype(np.float32))[0] == 1.0  # float32: the wrong branch
    exact = with_exact_thresholds(stump(), {0: [THRESHOLD]}, cast_input=False)
    assert run(exact, x)[0] == 2.0  # as a float64 model: x > 0.1
    version = {o.domain: o.version for o in onnx.load_from_string(exact).opset_import}
    assert version["ai.onnx.ml"] == 3


def test_cast_input_keeps_a_float32_input() -> None:
    exact = with_exact_thresholds(stump(), {0: [THRESHOLD]}, cast_input=True)
    graph = onnx.load_from_string(exact).graph
    assert graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert [n.op_type for n in graph.node] == ["Cast", "TreeEnsembleRegressor"]
    # float32(0.1) as float64 is above the exact 0.1: the right branch, as scikit-learn decides
    assert run(exact, np.array([[np.float32(THRESHOLD)]], dtype=np.float32))[0] == 2.0


def test_thresholds_that_cannot_be_told_apart_refuse() -> None:
    near = float(np.nextafter(THRESHOLD, 1.0))
    with pytest.raises(ConversionError, match="several thresholds round"):
        with_exact_thresholds(stump(), {0: [THRESHOLD, near]}, cast_input=False)
    with pytest.raises(ConversionError, match="not one of the native model's thresholds"):
        with_exact_thresholds(stump(), {0: [0.7]}, cast_input=False)
    with pytest.raises(ConversionError, match="no tree ensemble"):
        graph = onnx.load_from_string(stump())
        graph.graph.node[0].op_type = "LinearRegressor"
        with_exact_thresholds(graph.SerializeToString(), {0: [THRESHOLD]}, cast_input=False)
