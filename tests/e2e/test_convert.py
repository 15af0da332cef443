"""``modelserve convert``: real models built at test time, converted by the real converters, the
parity report checked; a conversion that loses precision fails its gate."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from modelserve.offline.convert import ConvertOptions, OfflineError, convert_artifact
from modelserve.runtimes.registry import RuntimeRegistry
from tests.harness import example_builder, run_cli

build = example_builder()

CLI_TIMEOUT_S = 240.0
"""A convert command imports scikit-learn, skl2onnx and onnxruntime: 30 s and more on the shared
machine under load (the harness's 60 s default was hit)."""

REPORT_KEYS = {
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


def write_csv(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*(f"f{i}" for i in range(x.shape[1])), "target"])
        for row, target in zip(x, y, strict=True):
            writer.writerow([*row, target])
    return path


def test_sklearn_classifier_converts_with_a_passing_report(tmp_path: Path) -> None:
    artifact = tmp_path / "iris" / "1" / "model.skops"
    artifact.parent.mkdir(parents=True)
    build.build_iris_sklearn(artifact)
    x, y = build.classification_data()
    sample = write_csv(tmp_path / "sample.csv", x, y)
    out = tmp_path / "out" / "iris.onnx"
    out.parent.mkdir()
    done = run_cli(["convert", str(artifact), "--sample", str(sample), "--label", "target",
                    "--out", str(out)], timeout=CLI_TIMEOUT_S)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((out.parent / "conversion_report.json").read_text())
    assert set(report) == REPORT_KEYS
    assert report["passed"] is True and report["reasons"] == []
    assert report["converter"] == "skl2onnx" and report["rows"] == len(x)
    assert report["label_agreement"] == 1.0 and report["mismatch_rate"] == 0.0
    assert {"scikit-learn", "skl2onnx", "onnxruntime", "ai.onnx"} <= set(report["versions"])
    assert "passed\tyes" in done.stdout  # plain text when stdout is not a terminal
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    labels = session.run(["label"], {"input": x.astype(np.float32)})[0]
    np.testing.assert_array_equal(labels, build.fit_logistic_regression().predict(x))


@pytest.mark.parametrize("kind", ["xgboost", "lightgbm"])
def test_tree_boosters_convert(tmp_path: Path, kind: str) -> None:
    filename, builder = {
        "xgboost": ("model.ubj", build.build_iris_xgboost),
        "lightgbm": ("model.lgb.txt", build.build_iris_lightgbm),
    }[kind]
    artifact = tmp_path / filename
    builder(artifact)
    x, _ = build.classification_data()
    np.save(tmp_path / "sample.npy", x)
    options = ConvertOptions(artifact, tmp_path / "sample.npy", out=tmp_path / "m.onnx")
    result = convert_artifact(options, RuntimeRegistry())
    assert result.report.passed, result.report.reasons
    assert result.report.converter == "onnxmltools" and kind in result.report.versions
    assert result.model_path == tmp_path / "m.onnx" and result.model_path.is_file()


def test_a_conversion_that_loses_precision_fails_its_gate(tmp_path: Path) -> None:
    """Features around 1e7 whose differences carry the prediction: float64 keeps them, the
    float32 graph rounds each to a whole number, so its predictions are off by units. The gate
    fails and nothing is written but the report; in float64 the same model passes."""
    import skops.io as sio
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(0)
    x = 1e7 + rng.standard_normal((50, 3))
    y = x @ np.array([1.0, -1.0, 0.0])
    artifact = tmp_path / "model.skops"
    sio.dump(LinearRegression().fit(x, y), artifact)
    np.save(tmp_path / "sample.npy", x)
    out = tmp_path / "model.onnx"
    done = run_cli(["convert", str(artifact), "--sample", str(tmp_path / "sample.npy"),
                    "--out", str(out)], timeout=CLI_TIMEOUT_S)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads((tmp_path / "conversion_report.json").read_text())
    assert report["passed"] is False and report["mismatch_rate"] > 0.5
    assert "differ beyond rtol 1e-05/atol 1.5e-05" in report["reasons"][0]
    assert not out.exists()
    assert "no ONNX file (the parity gate failed)" in done.stdout
    options = ConvertOptions(artifact, tmp_path / "sample.npy", out=out, precision="float64")
    result = convert_artifact(options, RuntimeRegistry())
    assert result.report.passed and out.is_file()


def test_quantizing_a_tree_graph_is_refused_with_the_reason(tmp_path: Path) -> None:
    artifact = tmp_path / "model.lgb.txt"
    build.build_iris_lightgbm(artifact)
    np.save(tmp_path / "sample.npy", build.regression_data()[0])
    options = ConvertOptions(
        artifact, tmp_path / "sample.npy", out=tmp_path / "m.onnx", quantize="int8"
    )
    with pytest.raises(OfflineError, match=r"only ai.onnx.ml operators \(TreeEnsembleRegressor\)"):
        convert_artifact(options, RuntimeRegistry())


def test_pickle_needs_trust_and_optimize_keeps_parity(tmp_path: Path) -> None:
    import joblib

    model = build.fit_logistic_regression()
    artifact = tmp_path / "model.joblib"
    joblib.dump(model, artifact)
    x, _ = build.classification_data()
    np.save(tmp_path / "sample.npy", x)
    options = ConvertOptions(artifact, tmp_path / "sample.npy", out=tmp_path / "m.onnx")
    with pytest.raises(OfflineError, match="refusing to load pickle"):
        convert_artifact(options, RuntimeRegistry())
    trusted = ConvertOptions(
        artifact, tmp_path / "sample.npy", out=tmp_path / "m.onnx", trust=True, optimize=True
    )
    result = convert_artifact(trusted, RuntimeRegistry())
    assert result.report.passed, result.report.reasons
    assert result.report.converter == "skl2onnx + onnxruntime graph optimisation"


def test_a_sample_that_does_not_fit_says_why(tmp_path: Path) -> None:
    artifact = tmp_path / "model.skops"
    build.build_iris_sklearn(artifact)
    (tmp_path / "sample.csv").write_text("a,b\n1,2\n")
    options = ConvertOptions(artifact, tmp_path / "sample.csv", out=tmp_path / "m.onnx")
    with pytest.raises(OfflineError, match=r"shape \[1, 2\] does not fit input 'input'"):
        convert_artifact(options, RuntimeRegistry())


def test_a_version_folder_converts_with_the_runtime_its_file_names(tmp_path: Path) -> None:
    """`modelserve convert <model>/<version>` finds the artifact and its runtime as the server
    does; a folder with several model files, or none, is one line on stderr and exit code 2."""
    version = tmp_path / "repo" / "iris" / "1"
    version.mkdir(parents=True)
    build.build_iris_sklearn(version / "model.skops")
    (version / "conversion_report.json").write_text("{}")  # the server's own files are ignored
    x, _ = build.classification_data()
    np.save(tmp_path / "sample.npy", x)
    out = tmp_path / "iris.onnx"
    done = run_cli(["convert", str(version), "--sample", str(tmp_path / "sample.npy"),
                    "--out", str(out)], timeout=CLI_TIMEOUT_S)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "converter\tskl2onnx" in done.stdout and out.is_file()
    build.build_iris_xgboost(version / "model.ubj")
    done = run_cli(["convert", str(version), "--sample", str(tmp_path / "sample.npy"),
                    "--out", str(out)], timeout=CLI_TIMEOUT_S)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert "several model files (model.skops (sklearn), model.ubj (xgboost))" in done.stderr
    empty = tmp_path / "repo" / "iris" / "2"
    empty.mkdir()
    (empty / "notes.txt").write_text("no model here")
    options = ConvertOptions(empty, tmp_path / "sample.npy", out=out)
    with pytest.raises(OfflineError, match=r"holds no model file whose ending names its runtime"):
        convert_artifact(options, RuntimeRegistry())
