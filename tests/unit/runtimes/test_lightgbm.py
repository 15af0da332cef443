"""The LightGBM runtime against the booster's own predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelserve.errors import ModelLoadError
from modelserve.runtimes.base import WIDENING_TO_FP64
from modelserve.types import TensorSpec
from tests.unit.runtimes.artifacts import build, features, make_ctx


def test_lightgbm_regression_and_multiclass(tmp_path: Path) -> None:
    import lightgbm as lgb

    from modelserve.runtimes.lightgbm import LightGBMRuntime

    ctx = make_ctx(tmp_path / "lgb", parameters={"num_threads": 1})
    path = ctx.version_dir / "model.lgb.txt"
    build.build_iris_lightgbm(path)
    runtime = LightGBMRuntime.load(ctx)
    sig = runtime.signature()
    assert sig.inputs == (TensorSpec("input", "FP64", (-1, 4), WIDENING_TO_FP64),)
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
