"""The ONNX runtime against onnxruntime's and numpy's own answers, on models built at test time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelserve.errors import ModelLoadError
from modelserve.types import TensorSpec
from tests.unit.runtimes.artifacts import build, features, make_ctx


def test_onnx_classifier_signature_and_predictions(tmp_path: Path) -> None:
    from modelserve.runtimes.onnx import OnnxRuntime

    ctx = make_ctx(tmp_path / "iris_onnx")
    build.build_iris_onnx(ctx.version_dir / "model.onnx")
    runtime = OnnxRuntime.load(ctx)
    sig = runtime.signature()
    assert sig.inputs == (TensorSpec("input", "FP32", (-1, 4)),)
    assert sig.outputs == (
        TensorSpec("label", "INT64", (-1,)),
        TensorSpec("probabilities", "FP32", (-1, 3)),
    )
    assert sig.batchable
    assert runtime.platform == "onnxruntime_onnx"

    x = features(dtype=np.float32)
    out = runtime.predict({"input": x})
    reference = build.fit_logistic_regression()
    np.testing.assert_array_equal(out["label"], reference.predict(x))
    np.testing.assert_allclose(out["probabilities"], reference.predict_proba(x), rtol=1e-4)
    assert out["probabilities"].dtype == np.float32


def test_onnx_mlp_matches_numpy_forward_pass(tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    from modelserve.runtimes.onnx import OnnxRuntime

    ctx = make_ctx(tmp_path / "mlp", parameters={"intra_op_num_threads": 2})
    path = ctx.version_dir / "model.onnx"
    build.build_mlp_onnx(path, sizes=(8, 16, 16, 3))
    runtime = OnnxRuntime.load(ctx)
    sig = runtime.signature()
    assert sig.inputs == (TensorSpec("input", "FP32", (-1, 8)),)
    assert sig.outputs == (TensorSpec("output", "FP32", (-1, 3)),)
    assert sig.batchable

    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    x = features(n=5, width=8, dtype=np.float32)
    h = np.maximum(x @ weights["w0"] + weights["b0"], 0)
    h = np.maximum(h @ weights["w1"] + weights["b1"], 0)
    expected = h @ weights["w2"] + weights["b2"]
    np.testing.assert_allclose(runtime.predict({"input": x})["output"], expected, rtol=1e-4)


def test_onnx_zipmap_output_is_refused(tmp_path: Path) -> None:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    from modelserve.runtimes.onnx import OnnxRuntime

    ctx = make_ctx(tmp_path / "zipmap")
    onx = convert_sklearn(
        build.fit_logistic_regression(),
        initial_types=[("input", FloatTensorType([None, 4]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    (ctx.version_dir / "model.onnx").write_bytes(onx.SerializeToString())
    with pytest.raises(ModelLoadError, match="zipmap"):
        OnnxRuntime.load(ctx)


def _string_identity(path: Path, shape: list[Any]) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["text"], ["same"])],
        "identity",
        [helper.make_tensor_value_info("text", TensorProto.STRING, shape)],
        [helper.make_tensor_value_info("same", TensorProto.STRING, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_onnx_string_tensor_round_trip(tmp_path: Path) -> None:
    from modelserve.runtimes.onnx import OnnxRuntime

    ctx = make_ctx(tmp_path / "strings")
    _string_identity(ctx.version_dir / "model.onnx", [None, 2])
    runtime = OnnxRuntime.load(ctx)
    sig = runtime.signature()
    assert sig.inputs == (TensorSpec("text", "BYTES", (-1, 2)),)
    assert sig.outputs == (TensorSpec("same", "BYTES", (-1, 2)),)

    text = np.empty((2, 2), dtype=object)
    text[:] = [[b"hello", "h\u00e9".encode()], [b"", b"x y"]]
    out = runtime.predict({"text": text})["same"]
    assert out.dtype == object and out.shape == (2, 2)
    assert out.tolist() == text.tolist()
    assert all(isinstance(item, bytes) for item in out.ravel())


def test_onnx_fixed_batch_is_not_batchable_and_bad_threads_refused(tmp_path: Path) -> None:
    from modelserve.runtimes.onnx import OnnxRuntime

    ctx = make_ctx(tmp_path / "fixed")
    _string_identity(ctx.version_dir / "model.onnx", [3])
    sig = OnnxRuntime.load(ctx).signature()
    assert sig.inputs[0].shape == (3,)
    assert not sig.batchable

    bad = make_ctx(tmp_path / "fixed", parameters={"intra_op_num_threads": "many"})
    with pytest.raises(ModelLoadError, match="intra_op_num_threads"):
        OnnxRuntime.load(bad)


def test_onnx_corrupt_file_is_a_load_error(tmp_path: Path) -> None:
    from modelserve.runtimes.onnx import OnnxRuntime

    ctx = make_ctx(tmp_path / "corrupt")
    (ctx.version_dir / "model.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(ModelLoadError, match=r"model\.onnx"):
        OnnxRuntime.load(ctx)
