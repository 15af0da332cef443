"""The XGBoost runtime against the booster's own predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelserve.types import TensorSpec
from tests.unit.runtimes.artifacts import build, features, make_ctx


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
