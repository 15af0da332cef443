"""The parity gate of serving/conversion.py: tolerances, labels, ties, the float64 retry, and
the report's exact keys; conversions of real models (built at test time) through it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelserve.config.model import ModelConfig
from modelserve.errors import ConversionError
from modelserve.runtimes.base import Arrays, LoadContext, OnnxOutput, Runtime
from modelserve.runtimes.registry import RuntimeRegistry
from modelserve.serving.conversion import (
    REPORT_KEYS,
    ConversionReport,
    Tolerance,
    check_parity,
    convert,
)
from modelserve.types import RuntimeSignature

LABEL = OnnxOutput("label", "label")
PROBA = OnnxOutput("probabilities", "probabilities")
PREDICTION = OnnxOutput("prediction", "variable", flatten=True)


def test_numeric_outputs_within_the_default_tolerances_pass() -> None:
    want = {"prediction": np.array([1.0, 100.0, -3.0])}
    got = {"prediction": want["prediction"] * (1 + 5e-6)}
    parity = check_parity(want, got, (PREDICTION,), "float32", Tolerance())
    assert parity.passed and parity.mismatch_rate == 0.0
    assert parity.max_abs_err == pytest.approx(5e-4)
    assert parity.max_rel_err == pytest.approx(5e-6)
    assert parity.label_agreement is None


def test_one_row_beyond_the_tolerance_fails_with_its_rate() -> None:
    want = {"prediction": np.zeros(4)}
    got = {"prediction": np.array([0.0, 2e-5, 0.0, 0.0])}
    parity = check_parity(want, got, (PREDICTION,), "float32", Tolerance())
    assert not parity.passed
    assert parity.mismatch_rate == 0.25
    assert "1 of 4 rows (25.00%)" in parity.reasons[0]


def test_classifier_labels_need_999_per_mille_and_probabilities_1e4() -> None:
    rows = 2000
    labels = np.arange(rows) % 3
    proba = np.full((rows, 3), 0.1)
    proba[np.arange(rows), labels] = 0.8
    want = {"label": labels, "probabilities": proba}
    flipped = labels.copy()
    flipped[0] = (labels[0] + 1) % 3  # 1 of 2000: 99.95 % agree
    got = {"label": flipped, "probabilities": proba + 5e-5}
    parity = check_parity(want, got, (LABEL, PROBA), "float32", Tolerance())
    assert parity.passed and parity.label_agreement == pytest.approx(0.9995)
    flipped[1:4] = (labels[1:4] + 1) % 3  # 4 of 2000: 99.8 %
    parity = check_parity(want, got, (LABEL, PROBA), "float32", Tolerance())
    assert not parity.passed and "99.80%" in parity.reasons[0]
    got["probabilities"] = proba + 2e-4
    parity = check_parity(want, {**got, "label": labels}, (LABEL, PROBA), "x", Tolerance())
    assert not parity.passed and "probabilities" in parity.reasons[0]


def test_a_label_flip_on_tied_probabilities_is_agreement() -> None:
    want = {"label": np.array([0, 1]), "probabilities": np.array([[0.5, 0.5], [0.2, 0.8]])}
    got = {"label": np.array([1, 1]), "probabilities": want["probabilities"]}
    parity = check_parity(want, got, (LABEL, PROBA), "float32", Tolerance(), classes=("0", "1"))
    assert parity.passed and parity.label_agreement == 1.0
    without_classes = check_parity(want, got, (LABEL, PROBA), "float32", Tolerance())
    assert without_classes.label_agreement == 0.5


def test_shape_and_missing_outputs_fail() -> None:
    want = {"prediction": np.zeros(3)}
    parity = check_parity(want, {"prediction": np.zeros((3, 1))}, (PREDICTION,), "f", Tolerance())
    assert not parity.passed and "shape [3, 1] instead of [3]" in parity.reasons[0]
    parity = check_parity(want, {}, (PREDICTION,), "f", Tolerance())
    assert parity.reasons == ["output 'prediction' is missing"]


def test_nan_in_both_is_equal_nan_in_one_is_a_mismatch() -> None:
    want = {"prediction": np.array([np.nan, 1.0])}
    assert check_parity(want, {"prediction": want["prediction"]}, (PREDICTION,), "", Tolerance())
    parity = check_parity(
        want, {"prediction": np.array([0.0, 1.0])}, (PREDICTION,), "", Tolerance()
    )
    assert not parity.passed


def test_report_round_trips_with_exactly_its_keys() -> None:
    report = ConversionReport("skl2onnx", {"onnx": "1"}, 3, 0.1, 0.2, 0.0, 1.0, True, [])
    document = report.to_dict()
    assert tuple(document) == REPORT_KEYS
    assert set(document) == {
        "converter",
        "versions",
        "rows",
        "max_abs_err",
        "max_rel_err",
        "mismatch_rate",
        "label_agreement",
        "passed",
        "reasons",
    }
    assert ConversionReport.from_dict(document) == report
    with pytest.raises(ValueError):
        ConversionReport.from_dict({**document, "extra": 1})


# ---- real conversions ---------------------------------------------------------------------


def _onnx_loader(path: Path) -> Runtime:
    ctx = LoadContext("m", "1", path.parent, path.parent, ModelConfig(artifact=path.name))
    return RuntimeRegistry().resolve("onnx").load(ctx)


def _load(runtime: str, path: Path, **config: Any) -> Runtime:
    ctx = LoadContext("m", "1", path.parent.parent, path.parent, ModelConfig(**config))
    return RuntimeRegistry().resolve(runtime).load(ctx)


def _lightgbm_with_rows_at_thresholds(tmp_path: Path) -> tuple[Runtime, Arrays]:
    """A LightGBM regressor and rows whose feature lies between a split threshold and its
    float32 rounding: its float32 graph takes the other branch there."""
    import lightgbm as lgb
    from sklearn.datasets import make_regression

    x, y = make_regression(n_samples=400, n_features=4, noise=0.1, random_state=0)
    params = {"objective": "regression", "num_leaves": 7, "verbose": -1, "seed": 0}
    booster = lgb.train(params, lgb.Dataset(x, label=y), num_boost_round=10)
    path = tmp_path / "lgb" / "1" / "model.lgb.txt"
    path.parent.mkdir(parents=True)
    booster.save_model(str(path))
    rng = np.random.default_rng(0)
    rows = []

    def walk(node: dict[str, Any]) -> None:
        if "split_feature" in node:
            row = rng.uniform(-2, 2, 4)
            threshold = float(node["threshold"])
            row[node["split_feature"]] = (threshold + float(np.float32(threshold))) / 2
            rows.append(row)
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in booster.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    return _load("lightgbm", path), {"input": np.asarray(rows)}


def test_a_tree_model_whose_float32_graph_flips_is_retried_in_float64(tmp_path: Path) -> None:
    native, sample = _lightgbm_with_rows_at_thresholds(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    conversion = convert(native, sample, _onnx_loader, work)
    report = conversion.report
    assert report.passed, report.reasons
    assert conversion.export is not None and conversion.export.precision == "float64"
    assert report.reasons[0].startswith("float32: failed:")
    assert report.reasons[1].startswith("float64: passed")
    assert report.versions["ai.onnx.ml"] == "3"
    assert conversion.runtime is not None
    served = conversion.runtime.predict(sample)["prediction"]
    np.testing.assert_allclose(served, native.predict(sample)["prediction"], rtol=1e-5, atol=1.5e-5)
    forced = convert(native, sample, _onnx_loader, work, precision="float32")
    assert not forced.report.passed and len(forced.report.reasons) == 1


def test_a_runtime_without_converter_says_so(tmp_path: Path) -> None:
    class Plain(Runtime):
        platform = "plain"

        @classmethod
        def load(cls, ctx: LoadContext) -> Runtime:
            return cls()

        def signature(self) -> RuntimeSignature:
            return RuntimeSignature()

        def predict(self, inputs: Arrays) -> Arrays:
            return inputs

    with pytest.raises(ConversionError, match="the plain runtime has no ONNX converter"):
        convert(Plain(), {"x": np.zeros((1, 1))}, _onnx_loader, tmp_path)
