"""``accelerate: onnx``: the sample the parity gate runs on, the conversion cache keyed by the
artifact's hash, and the fallback to the native model with the reason. Real scikit-learn models,
converted by skl2onnx and run by onnxruntime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio

from modelserve.config.model import ModelConfig
from modelserve.errors import ConversionError
from modelserve.runtimes.base import CACHE_DIR, LoadContext, Runtime
from modelserve.runtimes.registry import RuntimeRegistry
from modelserve.runtimes.sklearn import SklearnRuntime
from modelserve.serving.acceleration import (
    MAX_SAMPLE_ROWS,
    MIN_SAMPLE_ROWS,
    accelerate,
    onnx_loader,
    sample_rows,
)
from modelserve.serving.conversion import OnnxAdapter
from tests.harness import example_builder

build = example_builder()


def load_sklearn(version_dir: Path, **config: object) -> tuple[LoadContext, Runtime]:
    ctx = LoadContext("m", version_dir.name, version_dir.parent, version_dir, ModelConfig(**config))
    return ctx, SklearnRuntime.load(ctx)


@pytest.fixture
def iris(tmp_path: Path) -> Path:
    version_dir = tmp_path / "iris" / "1"
    version_dir.mkdir(parents=True)
    build.build_iris_sklearn(version_dir / "model.skops")
    return version_dir


def test_sample_rows_keep_the_own_rows_and_top_up_within_the_feature_ranges(
    tmp_path: Path,
) -> None:
    from sklearn.tree import DecisionTreeRegressor

    x, y = build.regression_data()
    version_dir = tmp_path / "tree" / "1"
    version_dir.mkdir(parents=True)
    sio.dump(DecisionTreeRegressor(max_depth=4, random_state=0).fit(x, y), version_dir / "m.skops")
    _, native = load_sklearn(version_dir)
    own = [{"input": x[:10]}]
    rows = sample_rows(native, own)["input"]
    assert rows.shape == (MIN_SAMPLE_ROWS, x.shape[1]) and rows.dtype == np.float64
    np.testing.assert_array_equal(rows[:10], x[:10])
    ranges = native.feature_ranges()
    assert ranges is not None
    low = np.array([r[0] for r in ranges])
    high = np.array([r[1] for r in ranges])
    assert ((rows[10:] >= low) & (rows[10:] <= high)).all()
    many = sample_rows(native, [{"input": np.tile(x, (10, 1))}])["input"]
    assert len(many) == MAX_SAMPLE_ROWS


def test_a_model_without_one_tabular_input_has_no_sample(iris: Path) -> None:
    class NoInputs(SklearnRuntime):
        def signature(self):  # type: ignore[no-untyped-def]
            return super().signature().__class__(inputs=(), outputs=())

    _, native = load_sklearn(iris)
    odd = NoInputs(native._estimator, ())  # type: ignore[attr-defined]
    with pytest.raises(ConversionError, match=r"no single \[rows, features\] input"):
        sample_rows(odd, [])


def test_the_graph_serves_under_the_native_signature_and_is_cached(iris: Path) -> None:
    ctx, native = load_sklearn(iris)
    registry = RuntimeRegistry(plugins=[])
    x, _ = build.classification_data()
    outcome = accelerate(ctx, native, onnx_loader(registry, ctx), [{"input": x}])
    assert isinstance(outcome.runtime, OnnxAdapter) and outcome.notice == ""
    assert "served through ONNX (skl2onnx graph, float32" in outcome.summary
    assert outcome.runtime.signature() == native.signature()
    want, got = native.predict({"input": x}), outcome.runtime.predict({"input": x})
    np.testing.assert_array_equal(got["label"], want["label"])
    np.testing.assert_allclose(got["probabilities"], want["probabilities"], atol=1e-4)
    assert got["probabilities"].dtype == np.float64  # the native datatype, not the graph's
    cached = sorted(p.name for p in (iris / CACHE_DIR).iterdir())
    assert len(cached) == 2 and cached[0].endswith(".json") and cached[1].endswith(".onnx")
    meta = json.loads((iris / CACHE_DIR / cached[0]).read_text())
    assert meta["report"]["passed"] is True and "onnxruntime" in meta["versions"]
    outcome.runtime.unload()

    again = accelerate(ctx, native, onnx_loader(registry, ctx), [{"input": x}])
    assert "cached graph" in again.summary
    again.runtime.unload()

    # a different converter or onnxruntime than recorded: converted again
    meta["versions"]["onnxruntime"] = "0.0.1"
    (iris / CACHE_DIR / cached[0]).write_text(json.dumps(meta))
    fresh = accelerate(ctx, native, onnx_loader(registry, ctx), [{"input": x}])
    assert "cached graph" not in fresh.summary and fresh.notice == ""
    fresh.runtime.unload()

    # a new artifact has a new hash: its own cache entry
    build.build_iris_sklearn(iris / "model.skops")
    from sklearn.linear_model import LogisticRegression

    sio.dump(LogisticRegression(C=0.01, max_iter=500).fit(x, _), iris / "model.skops")
    ctx, native = load_sklearn(iris)
    newer = accelerate(ctx, native, onnx_loader(registry, ctx), [{"input": x}])
    assert "cached graph" not in newer.summary
    assert len(list((iris / CACHE_DIR).glob("*.onnx"))) == 2
    newer.runtime.unload()


def test_a_graph_that_disagrees_leaves_the_native_model_serving(tmp_path: Path) -> None:
    """Features around 1e7 whose differences carry the prediction: the float32 graph rounds
    them away. The version's own rows show it; the native model serves, with the reason."""
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(0)
    x = 1e7 + rng.standard_normal((50, 3))
    version_dir = tmp_path / "precise" / "1"
    version_dir.mkdir(parents=True)
    sio.dump(LinearRegression().fit(x, x @ np.array([1.0, -1.0, 0.0])), version_dir / "m.skops")
    ctx, native = load_sklearn(version_dir)
    registry = RuntimeRegistry(plugins=[])
    outcome = accelerate(ctx, native, onnx_loader(registry, ctx), [{"input": x}])
    assert outcome.runtime is native
    assert outcome.notice.startswith("accelerate: onnx did not apply, the native model serves: ")
    assert "differ beyond rtol 1e-05/atol 1.5e-05" in outcome.notice
    # the graph is cached, and its gate runs again on the current rows at the next load
    assert len(list((version_dir / CACHE_DIR).glob("onnx-*.onnx"))) == 1
    again = accelerate(ctx, native, onnx_loader(registry, ctx), [{"input": x}])
    assert again.runtime is native and "differ beyond rtol" in again.notice


def test_a_runtime_without_a_converter_serves_natively(tmp_path: Path) -> None:
    ctx, native = load_sklearn(_iris_copy(tmp_path))

    def no_onnx(path: Path) -> Runtime:
        raise AssertionError("never reached")

    class Plain(SklearnRuntime):
        def export_onnx(self, opset, precision, sample):  # type: ignore[no-untyped-def]
            return Runtime.export_onnx(self, opset, precision, sample)

    plain = Plain(native._estimator, ())  # type: ignore[attr-defined]
    outcome = accelerate(ctx, plain, no_onnx, [])
    assert outcome.runtime is plain and "has no ONNX converter" in outcome.notice


def _iris_copy(tmp_path: Path) -> Path:
    version_dir = tmp_path / "plain" / "1"
    version_dir.mkdir(parents=True)
    build.build_iris_sklearn(version_dir / "model.skops")
    return version_dir
