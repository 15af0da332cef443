"""The framework runtimes, each checked against the framework's own predictions on models built
at test time (with the builders of examples/build_examples.py)."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from modelserve.config.model import ModelConfig, TensorConfig
from modelserve.errors import ModelLoadError
from modelserve.runtimes.base import LoadContext
from modelserve.types import TensorSpec

ROOT = Path(__file__).resolve().parents[2]


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "modelserve_test_build_examples", ROOT / "examples" / "build_examples.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _builder()


def make_ctx(model_dir: Path, version: str = "1", **config: Any) -> LoadContext:
    version_dir = model_dir / version
    version_dir.mkdir(parents=True, exist_ok=True)
    return LoadContext(
        model_name=model_dir.name,
        version=version,
        model_dir=model_dir,
        version_dir=version_dir,
        config=ModelConfig(**config),
    )


def features(n: int = 7, width: int = 4, dtype: Any = np.float64) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((n, width)).astype(dtype)


# --------------------------------------------------------------------------- onnx


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


# --------------------------------------------------------------------------- sklearn


def test_sklearn_skops_classifier(tmp_path: Path) -> None:
    from modelserve.runtimes.sklearn import SklearnRuntime

    ctx = make_ctx(tmp_path / "iris_sklearn")
    build.build_iris_sklearn(ctx.version_dir / "model.skops")
    runtime = SklearnRuntime.load(ctx)
    sig = runtime.signature()
    assert sig.inputs == (TensorSpec("input", "FP64", (-1, 4)),)
    assert sig.outputs == (
        TensorSpec("label", "INT64", (-1,)),
        TensorSpec("probabilities", "FP64", (-1, 3)),
    )
    assert sig.batchable and sig.labels == ("0", "1", "2")

    x = features()
    out = runtime.predict({"input": x})
    reference = build.fit_logistic_regression()
    np.testing.assert_array_equal(out["label"], reference.predict(x))
    np.testing.assert_allclose(out["probabilities"], reference.predict_proba(x))


def test_sklearn_random_forest_loads_without_trust(tmp_path: Path) -> None:
    """Tree ensembles hold sklearn.tree._tree.Tree, which skops does not trust by default."""
    import skops.io as sio
    from sklearn.ensemble import RandomForestRegressor

    from modelserve.runtimes.sklearn import SklearnRuntime

    x, y = build.regression_data()
    forest = RandomForestRegressor(n_estimators=3, random_state=0).fit(x, y)
    ctx = make_ctx(tmp_path / "forest")
    sio.dump(forest, ctx.version_dir / "model.skops")
    assert "sklearn.tree._tree.Tree" in sio.get_untrusted_types(
        file=ctx.version_dir / "model.skops"
    )
    runtime = SklearnRuntime.load(ctx)
    assert runtime.signature().outputs == (TensorSpec("prediction", "FP64", (-1,)),)
    np.testing.assert_allclose(runtime.predict({"x": x[:5]})["prediction"], forest.predict(x[:5]))


def test_sklearn_string_labels_and_2d_regression(tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.linear_model import LinearRegression, LogisticRegression

    from modelserve.runtimes.sklearn import SklearnRuntime

    x, y = build.classification_data()
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    ctx = make_ctx(tmp_path / "names")
    classifier = LogisticRegression(max_iter=500).fit(x, names)
    sio.dump(classifier, ctx.version_dir / "model.skops")
    runtime = SklearnRuntime.load(ctx)
    assert runtime.signature().outputs[0] == TensorSpec("label", "BYTES", (-1,))
    assert runtime.signature().labels == ("setosa", "versicolor", "virginica")
    labels = runtime.predict({"input": x[:20]})["label"]
    assert labels.dtype == object
    assert labels.tolist() == [str(s).encode() for s in classifier.predict(x[:20])]
    assert len(set(labels.tolist())) > 1

    ctx2 = make_ctx(tmp_path / "multi")
    two = np.column_stack([x.sum(axis=1), x[:, 0]])
    sio.dump(LinearRegression().fit(x, two), ctx2.version_dir / "model.skops")
    regressor = SklearnRuntime.load(ctx2)
    assert regressor.signature().outputs == (TensorSpec("prediction", "FP64", (-1, 2)),)
    np.testing.assert_allclose(regressor.predict({"input": x[:3]})["prediction"], two[:3])


def test_sklearn_stacks_declared_inputs_in_order(tmp_path: Path) -> None:
    import skops.io as sio

    from modelserve.runtimes.sklearn import SklearnRuntime

    declared = [TensorConfig(name=f"f{i}", datatype="FP64", shape=[-1]) for i in range(4)]
    ctx = make_ctx(tmp_path / "columns", inputs=declared)
    sio.dump(build.fit_logistic_regression(), ctx.version_dir / "model.skops")
    runtime = SklearnRuntime.load(ctx)
    x = features()
    columns = {f"f{i}": x[:, i] for i in (3, 1, 0, 2)}  # dict order differs from declared
    out = runtime.predict(columns)
    np.testing.assert_allclose(
        out["probabilities"], build.fit_logistic_regression().predict_proba(x)
    )


def test_sklearn_pickle_needs_trust(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import joblib

    from modelserve.runtimes.sklearn import SklearnRuntime

    model = build.fit_logistic_regression()
    refused = make_ctx(tmp_path / "pickled")
    joblib.dump(model, refused.version_dir / "model.joblib")
    with pytest.raises(ModelLoadError, match=r"refusing to load pickle file model\.joblib.*trust"):
        SklearnRuntime.load(refused)

    trusted = make_ctx(tmp_path / "pickled", trust=True)
    with caplog.at_level(logging.WARNING, logger="modelserve.runtimes.sklearn"):
        runtime = SklearnRuntime.load(trusted)
    warnings = [r for r in caplog.records if r.name == "modelserve.runtimes.sklearn"]
    assert warnings and warnings[0].levelno == logging.WARNING
    assert "model.joblib" in warnings[0].getMessage()
    x = features()
    np.testing.assert_array_equal(runtime.predict({"input": x})["label"], model.predict(x))


class ScaledIdentity:
    """A custom (non-sklearn) type, for the skops trust check."""

    def __init__(self, factor: float = 2.0) -> None:
        self.factor = factor

    def predict(self, x: np.ndarray) -> np.ndarray:
        total: np.ndarray = np.asarray(x, dtype=np.float64).sum(axis=1) * self.factor
        return total


def test_skops_with_custom_type_needs_trust(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import skops.io as sio

    from modelserve.runtimes.sklearn import SklearnRuntime

    refused = make_ctx(tmp_path / "custom")
    sio.dump(ScaledIdentity(3.0), refused.version_dir / "model.skops")
    with pytest.raises(ModelLoadError, match=r"ScaledIdentity.*trust: true"):
        SklearnRuntime.load(refused)

    if ScaledIdentity.__module__ not in sys.modules:  # pragma: no cover - import mode quirk
        pytest.skip("the test module is not importable by name, so skops cannot rebuild it")
    with caplog.at_level(logging.WARNING, logger="modelserve.runtimes.sklearn"):
        runtime = SklearnRuntime.load(make_ctx(tmp_path / "custom", trust=True))
    assert any("ScaledIdentity" in r.getMessage() for r in caplog.records)
    np.testing.assert_allclose(runtime.predict({"input": np.ones((2, 4))})["prediction"], [12, 12])


def test_skops_allow_list_is_by_module() -> None:
    from modelserve.runtimes.sklearn import _allowed

    assert _allowed("sklearn.tree._tree.Tree")
    assert _allowed("numpy.float64") and _allowed("scipy.sparse._csr.csr_matrix")
    assert not _allowed("numpyx.evil") and not _allowed("builtins.eval")
    assert not _allowed("os.system")


# --------------------------------------------------------------------------- xgboost / lightgbm


def test_xgboost_binary_classifier(tmp_path: Path) -> None:
    import xgboost as xgb

    from modelserve.runtimes.xgboost import XGBoostRuntime

    ctx = make_ctx(tmp_path / "xgb", parameters={"nthread": 2})
    path = ctx.version_dir / "model.ubj"
    build.build_iris_xgboost(path)
    runtime = XGBoostRuntime.load(ctx)
    sig = runtime.signature()
    assert sig.inputs == (TensorSpec("input", "FP32", (-1, 4)),)
    assert sig.outputs == (TensorSpec("prediction", "FP32", (-1,)),)
    assert sig.batchable

    booster = xgb.Booster()
    booster.load_model(str(path))
    x = features(dtype=np.float32)
    out = runtime.predict({"input": x})["prediction"]
    assert out.dtype == np.float32 and out.shape == (7,)
    np.testing.assert_allclose(out, booster.predict(xgb.DMatrix(x)), rtol=1e-6)
    assert ((out > 0) & (out < 1)).all()


def test_xgboost_softprob_has_one_column_per_class(tmp_path: Path) -> None:
    import xgboost as xgb

    from modelserve.runtimes.xgboost import XGBoostRuntime

    x, y = build.classification_data()
    params = {"objective": "multi:softprob", "num_class": 3, "max_depth": 2}
    booster = xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=3)
    ctx = make_ctx(tmp_path / "softprob", runtime="xgboost")
    booster.save_model(str(ctx.version_dir / "model.json"))
    runtime = XGBoostRuntime.load(ctx)
    assert runtime.signature().outputs == (TensorSpec("prediction", "FP32", (-1, 3)),)
    out = runtime.predict({"input": x[:4].astype(np.float32)})["prediction"]
    np.testing.assert_allclose(out, booster.predict(xgb.DMatrix(x[:4].astype(np.float32))))


def test_lightgbm_regression_and_multiclass(tmp_path: Path) -> None:
    import lightgbm as lgb

    from modelserve.runtimes.lightgbm import LightGBMRuntime

    ctx = make_ctx(tmp_path / "lgb", parameters={"num_threads": 1})
    path = ctx.version_dir / "model.lgb.txt"
    build.build_iris_lightgbm(path)
    runtime = LightGBMRuntime.load(ctx)
    sig = runtime.signature()
    assert sig.inputs == (TensorSpec("input", "FP64", (-1, 4)),)
    assert sig.outputs == (TensorSpec("prediction", "FP64", (-1,)),)
    x = features()
    expected = lgb.Booster(model_file=str(path)).predict(x)
    np.testing.assert_allclose(runtime.predict({"input": x})["prediction"], expected)

    cx, cy = build.classification_data()
    params = {"objective": "multiclass", "num_class": 3, "verbose": -1, "num_leaves": 4}
    multi = lgb.train(params, lgb.Dataset(cx, label=cy), num_boost_round=3)
    ctx2 = make_ctx(tmp_path / "lgb_multi")
    multi.save_model(str(ctx2.version_dir / "model.txt"))
    runtime2 = LightGBMRuntime.load(ctx2)
    assert runtime2.signature().outputs == (TensorSpec("prediction", "FP64", (-1, 3)),)
    np.testing.assert_allclose(
        runtime2.predict({"input": cx[:3]})["prediction"], multi.predict(cx[:3])
    )


def test_lightgbm_garbage_is_a_load_error(tmp_path: Path) -> None:
    from modelserve.runtimes.lightgbm import LightGBMRuntime

    ctx = make_ctx(tmp_path / "bad")
    (ctx.version_dir / "model.lgb.txt").write_text("this is not a booster\n")
    with pytest.raises(ModelLoadError, match="lightgbm"):
        LightGBMRuntime.load(ctx)


# --------------------------------------------------------------------------- python


PLUS = """
import numpy as np

class Model:
    inputs = [{"name": "X", "datatype": "FP32", "shape": [-1, 2]}]
    outputs = [{"name": "Y", "datatype": "FP32", "shape": [-1, 2]}]

    def load(self, version_dir, parameters):
        self.offset = float(parameters.get("offset", 0)) + DELTA
        self.seen = version_dir

    def predict(self, inputs):
        return {"Y": inputs["X"] + self.offset}
"""


def test_python_models_with_the_same_module_name_do_not_collide(tmp_path: Path) -> None:
    from modelserve.runtimes.python import PythonRuntime

    runtimes = []
    for name, delta in (("plus_one", 1), ("plus_ten", 10)):
        ctx = make_ctx(tmp_path / name, entrypoint="model:Model", parameters={"offset": 0.5})
        (ctx.model_dir / "model.py").write_text(PLUS.replace("DELTA", str(delta)))
        runtimes.append(PythonRuntime.load(ctx))
    x = np.zeros((3, 2), dtype=np.float32)
    np.testing.assert_allclose(runtimes[0].predict({"X": x})["Y"], x + 1.5)
    np.testing.assert_allclose(runtimes[1].predict({"X": x})["Y"], x + 10.5)
    assert runtimes[0]._model.seen == tmp_path / "plus_one" / "1"

    sig = runtimes[0].signature()
    assert sig.inputs == (TensorSpec("X", "FP32", (-1, 2)),)
    assert sig.outputs == (TensorSpec("Y", "FP32", (-1, 2)),)
    assert sig.batchable
    assert "model" not in sys.modules or not hasattr(sys.modules["model"], "PLUS")
    user_modules = [n for n in sys.modules if n.startswith("modelserve_user.plus_")]
    assert len(user_modules) == 2
    for runtime in runtimes:
        runtime.unload()
    assert not [n for n in sys.modules if n.startswith("modelserve_user.plus_")]


def test_python_version_folder_wins_over_model_folder(tmp_path: Path) -> None:
    from modelserve.runtimes.python import PythonRuntime

    ctx = make_ctx(tmp_path / "shadow", entrypoint="model:Model")
    (ctx.model_dir / "model.py").write_text(PLUS.replace("DELTA", "1"))
    (ctx.version_dir / "model.py").write_text(PLUS.replace("DELTA", "100"))
    out = PythonRuntime.load(ctx).predict({"X": np.zeros((1, 2), dtype=np.float32)})
    np.testing.assert_allclose(out["Y"], [[100, 100]])


def test_python_import_error_is_a_load_error(tmp_path: Path) -> None:
    from modelserve.runtimes.python import PythonRuntime

    ctx = make_ctx(tmp_path / "broken", entrypoint="model:Model")
    (ctx.model_dir / "model.py").write_text("raise RuntimeError('no GPU here')\n")
    with pytest.raises(ModelLoadError, match="RuntimeError: no GPU here"):
        PythonRuntime.load(ctx)
    assert not [n for n in sys.modules if n.startswith("modelserve_user.broken")]

    failing_load = make_ctx(tmp_path / "failing_load", entrypoint="model:Model")
    (failing_load.model_dir / "model.py").write_text(
        "class Model:\n    def load(self, d, p):\n        raise OSError('weights missing')\n"
        "    def predict(self, inputs):\n        return inputs\n"
    )
    with pytest.raises(ModelLoadError, match="weights missing"):
        PythonRuntime.load(failing_load)


def test_python_entrypoint_problems(tmp_path: Path) -> None:
    from modelserve.runtimes.python import PythonRuntime

    with pytest.raises(ModelLoadError, match="entrypoint"):
        PythonRuntime.load(make_ctx(tmp_path / "none"))
    with pytest.raises(ModelLoadError, match=r"model\.py"):
        PythonRuntime.load(make_ctx(tmp_path / "missing", entrypoint="model:Model"))
    ctx = make_ctx(tmp_path / "wrong_class", entrypoint="model:Nope")
    (ctx.model_dir / "model.py").write_text(PLUS.replace("DELTA", "1"))
    with pytest.raises(ModelLoadError, match="no class Nope"):
        PythonRuntime.load(ctx)


def test_python_predict_result_is_checked(tmp_path: Path) -> None:
    from modelserve.runtimes.python import PythonRuntime

    ctx = make_ctx(tmp_path / "results", entrypoint="model:Model")
    (ctx.model_dir / "model.py").write_text(
        "class Model:\n    def predict(self, inputs):\n        return inputs['mode']\n"
    )
    runtime = PythonRuntime.load(ctx)
    assert runtime.signature().inputs == () and not runtime.signature().batchable
    out = runtime.predict({"mode": {"A": [1, 2, 3]}})  # type: ignore[dict-item]
    np.testing.assert_array_equal(out["A"], np.array([1, 2, 3]))
    with pytest.raises(TypeError, match="dict"):
        runtime.predict({"mode": [1, 2]})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="'A'"):
        runtime.predict({"mode": {"A": object()}})  # type: ignore[dict-item]


def test_python_package_entrypoint_with_relative_import(tmp_path: Path) -> None:
    from modelserve.runtimes.python import PythonRuntime

    ctx = make_ctx(tmp_path / "pkg", entrypoint="mypkg.core:Model")
    package = ctx.model_dir / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("def double(x):\n    return x * 2\n")
    (package / "core.py").write_text(
        "from .helpers import double\n\n"
        "class Model:\n    def predict(self, inputs):\n        return {'Y': double(inputs['X'])}\n"
    )
    out = PythonRuntime.load(ctx).predict({"X": np.arange(3)})
    np.testing.assert_array_equal(out["Y"], [0, 2, 4])
    assert "mypkg" not in sys.modules


def test_example_python_add_model() -> None:
    from modelserve.config.model import load_model_config
    from modelserve.runtimes.python import PythonRuntime

    model_dir = ROOT / "examples" / "models" / "python_add"
    ctx = LoadContext("python_add", "1", model_dir, model_dir / "1", load_model_config(model_dir))
    runtime = PythonRuntime.load(ctx)
    a = np.arange(32, dtype=np.float32).reshape(2, 16)
    b = np.ones((2, 16), dtype=np.float32)
    out = runtime.predict({"INPUT0": a, "INPUT1": b})
    np.testing.assert_array_equal(out["OUTPUT0"], a + b)
    np.testing.assert_array_equal(out["OUTPUT1"], a - b)
    runtime.unload()


def test_runtimes_from_installed_entry_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package declaring ``[project.entry-points."modelserve.runtimes"]`` adds a runtime by
    name; nothing of it is imported until a model asks for it; a taken name is an error."""
    import sys

    from modelserve.errors import ModelLoadError
    from modelserve.runtimes.registry import RuntimeRegistry, installed_runtimes

    dist = tmp_path / "modelserve_plugin_demo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: modelserve-plugin-demo\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[modelserve.runtimes]\ndemo = plugin_demo_runtime:Demo\n"
    )
    (tmp_path / "plugin_demo_runtime.py").write_text(
        "from modelserve.runtimes.python import PythonRuntime\n\n"
        "class Demo(PythonRuntime):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "demo" in {point.name for point in installed_runtimes()}
    registry = RuntimeRegistry()
    assert "demo" in registry.names()
    assert "plugin_demo_runtime" not in sys.modules
    assert registry.resolve("demo").__name__ == "Demo"
    (dist / "entry_points.txt").write_text(
        "[modelserve.runtimes]\nonnx = plugin_demo_runtime:Demo\n"
    )
    with pytest.raises(ModelLoadError, match="already registered"):
        RuntimeRegistry()
