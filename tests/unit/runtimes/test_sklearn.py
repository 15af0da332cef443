"""The scikit-learn runtime: skops and (trusted) pickle files, checked against scikit-learn's own
predictions; what loads without trust and what does not."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelserve.config.model import TensorConfig
from modelserve.errors import ModelLoadError
from modelserve.runtimes.base import WIDENING_TO_FP64
from modelserve.types import TensorSpec
from tests.harness import run_python
from tests.unit.runtimes.artifacts import build, features, make_ctx


def test_sklearn_skops_classifier(tmp_path: Path) -> None:
    from modelserve.runtimes.sklearn import SklearnRuntime

    ctx = make_ctx(tmp_path / "iris_sklearn")
    build.build_iris_sklearn(ctx.version_dir / "model.skops")
    runtime = SklearnRuntime.load(ctx)
    sig = runtime.signature()
    assert sig.inputs == (TensorSpec("input", "FP64", (-1, 4), WIDENING_TO_FP64),)
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


def test_sklearn_computes_only_the_outputs_asked_for(tmp_path: Path) -> None:
    from modelserve.runtimes.sklearn import SklearnRuntime

    ctx = make_ctx(tmp_path / "iris_sklearn")
    build.build_iris_sklearn(ctx.version_dir / "model.skops")
    runtime = SklearnRuntime.load(ctx)
    calls: list[str] = []
    estimator = runtime._estimator
    for method in ("predict", "predict_proba"):
        original = getattr(estimator, method)

        def counted(x: np.ndarray, _name: str = method, _call: Any = original) -> Any:
            calls.append(_name)
            return _call(x)

        setattr(estimator, method, counted)
    x = features()
    reference = build.fit_logistic_regression()
    label = runtime.predictor(frozenset({"label"}))({"input": x})
    assert set(label) == {"label"} and calls == ["predict"]
    np.testing.assert_array_equal(label["label"], reference.predict(x))
    calls.clear()
    proba = runtime.predictor(frozenset({"probabilities"}))({"input": x})
    assert set(proba) == {"probabilities"} and calls == ["predict_proba"]
    np.testing.assert_allclose(proba["probabilities"], reference.predict_proba(x))


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

    assert ScaledIdentity.__module__ in sys.modules, "skops rebuilds it from its module name"
    with caplog.at_level(logging.WARNING, logger="modelserve.runtimes.sklearn"):
        runtime = SklearnRuntime.load(make_ctx(tmp_path / "custom", trust=True))
    assert any("ScaledIdentity" in r.getMessage() for r in caplog.records)
    np.testing.assert_allclose(runtime.predict({"input": np.ones((2, 4))})["prediction"], [12, 12])


def test_skops_allow_list_is_by_module() -> None:
    from modelserve.runtimes.sklearn import trusted_by_default

    assert trusted_by_default("sklearn.tree._tree.Tree")
    assert trusted_by_default("numpy.float64") and trusted_by_default(
        "scipy.sparse._csr.csr_matrix"
    )
    assert not trusted_by_default("numpyx.evil") and not trusted_by_default("builtins.eval")
    assert not trusted_by_default("os.system")


SKOPS_LOAD_PROBE = """
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy

from modelserve.config.model import ModelConfig
from modelserve.runtimes.base import LoadContext
from modelserve.runtimes.sklearn import ARRAY_API_ADAPTERS, SklearnRuntime

folder = Path(sys.argv[1])
context = LoadContext(folder.name, "1", folder, folder / "1", ModelConfig())
with ThreadPoolExecutor(2) as pool:  # two versions loading at once, as the server loads them
    runtimes = list(pool.map(SklearnRuntime.load, [context, context]))
print(sorted({name for r in runtimes for name in r.predict({"input": numpy.zeros((2, 4))})}))
print([name for name in ("torch", "dask", *ARRAY_API_ADAPTERS) if name in sys.modules])

import sklearn
import torch
from sklearn.utils._array_api import get_namespace

with sklearn.config_context(array_api_dispatch=True):
    xp, _ = get_namespace(torch.zeros((2, 4), dtype=torch.float64))
print(xp.__name__)
"""


def test_loading_a_skops_model_imports_no_array_api_framework(tmp_path: Path) -> None:
    """Importing skops walks every sklearn package, the vendored array-API adapters included,
    which would import torch and dask.array (seconds, hundreds of MB): the runtime blocks those
    adapters during that import only (two loads at once included), so a .skops model loads
    without them and scikit-learn's array-API support still finds torch's adapter when a
    caller asks for it."""
    ctx = make_ctx(tmp_path / "iris_sklearn")
    build.build_iris_sklearn(ctx.version_dir / "model.skops")
    result = run_python(
        SKOPS_LOAD_PROBE, str(ctx.model_dir), env={"SCIPY_ARRAY_API": "1"}, timeout=120
    )
    assert result.returncode == 0, result.stderr
    outputs, imported, namespace = result.stdout.strip().splitlines()
    assert outputs == "['label', 'probabilities']"
    assert imported == "[]"
    assert namespace == "sklearn.externals.array_api_compat.torch"
