"""The validation gate's judgement: MLflow's threshold semantics, baselines, a gate that cannot
run, and the report file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from modelserve.config.validation import Validation
from modelserve.runtimes.base import Arrays
from modelserve.serving.gates import REPORT_FILE, Subject, run_gate, write_report
from modelserve.types import TensorSpec

INPUTS = (TensorSpec("input", "FP64", (-1, 2)),)


def data(folder: Path, rows: int = 100) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, 2))
    y = (x[:, 0] > 0).astype(np.int64)
    lines = ["a,b,target", *(f"{a},{b},{t}" for (a, b), t in zip(x, y, strict=True))]
    (folder / "holdout.csv").write_text("\n".join(lines) + "\n")


def classifier(flip: float = 0.0, version: str = "2") -> Subject:
    """Right on every row but a ``flip`` share of them."""

    def predict(arrays: Arrays) -> Arrays:
        x = arrays["input"]
        label = (x[:, 0] > 0).astype(np.int64)
        wrong = np.abs(x[:, 1]) < np.quantile(np.abs(x[:, 1]), flip) if flip else False
        return {"label": np.where(wrong, 1 - label, label)}

    return Subject(version, predict, INPUTS, batch=64)


def validation(**metrics: dict[str, float]) -> Validation:
    return Validation.model_validate({"data": "holdout.csv", "label": "target", "metrics": metrics})


def gate(tmp_path: Path, rules: Validation, candidate: Subject, baseline: Subject | None = None):  # type: ignore[no-untyped-def]
    version_dir = tmp_path / candidate.version
    version_dir.mkdir(exist_ok=True)
    return run_gate("m", rules, version_dir, tmp_path, candidate, baseline)


def test_min_passes_and_fails_naming_the_metric_value_and_threshold(tmp_path: Path) -> None:
    data(tmp_path)
    report = gate(tmp_path, validation(accuracy={"min": 0.9}), classifier())
    assert report.passed and report.metrics["accuracy"] == 1.0 and report.rows == 100
    report = gate(tmp_path, validation(accuracy={"min": 0.9}), classifier(flip=0.5))
    assert not report.passed
    assert report.reason == "validation failed: accuracy 0.5 < min 0.9"


def test_changes_follow_mlflow(tmp_path: Path) -> None:
    data(tmp_path)
    good, worse = classifier(version="1"), classifier(flip=0.05)
    tolerant = validation(accuracy={"min_relative_change": -0.1})  # may lose 10 %
    report = gate(tmp_path, tolerant, worse, good)
    assert report.passed and report.baseline_metrics == {"accuracy": 1.0}
    assert report.checks[0].bound == pytest.approx(0.9)
    strict = validation(accuracy={"min_absolute_change": 0.0})  # must not lose anything
    report = gate(tmp_path, strict, worse, good)
    assert not report.passed
    assert re.search(r"accuracy 0\.9\d < 1 \(baseline 1, min_absolute_change 0\)", report.reason)
    lower = validation(p99_latency_ms={"min_absolute_change": 0.0})
    slow = Subject("1", good.predict, INPUTS, 64, latency={"p99_latency_ms": 1e-9})
    assert not gate(tmp_path, lower, classifier(), slow).passed  # latency: lower is better


def test_without_a_baseline_change_thresholds_are_skipped(tmp_path: Path) -> None:
    data(tmp_path)
    report = gate(tmp_path, validation(accuracy={"min_relative_change": 0.5}), classifier())
    assert report.passed
    assert report.notes == ["change thresholds skipped: no version to compare with"]
    assert report.checks[0].bound is None and "skipped" in report.checks[0].message


def test_a_gate_that_cannot_run_fails(tmp_path: Path) -> None:
    report = gate(tmp_path, validation(accuracy={"min": 0.1}), classifier())
    assert not report.passed and "not found" in report.reason
    data(tmp_path)

    def broken(arrays: Arrays) -> Arrays:
        raise RuntimeError("boom")

    subject = Subject("2", broken, INPUTS, 64)
    report = gate(tmp_path, validation(accuracy={"min": 0.1}), subject)
    assert report.reason == "validation failed: version 2 failed on the data: RuntimeError: boom"
    rules = Validation.model_validate(
        {"data": "holdout.csv", "label": "nope", "metrics": {"accuracy": {"min": 0.1}}}
    )
    assert "no label column 'nope'" in gate(tmp_path, rules, classifier()).reason


def test_data_in_the_version_folder_wins_and_never_outside(tmp_path: Path) -> None:
    data(tmp_path)
    version_dir = tmp_path / "2"
    version_dir.mkdir()
    (version_dir / "holdout.csv").write_text("a,b,target\n1,0,0\n")
    report = gate(tmp_path, validation(accuracy={"min": 0.5}), classifier())
    assert report.rows == 1 and not report.passed
    escape = Validation.model_validate(
        {"data": "../x.csv", "label": "t", "metrics": {"accuracy": {"min": 0}}}
    )
    (tmp_path.parent / "x.csv").write_text("a,b,t\n1,1,1\n")
    assert "not found" in gate(tmp_path, escape, classifier()).reason


def test_the_report_is_written_as_json(tmp_path: Path) -> None:
    data(tmp_path)
    report = gate(tmp_path, validation(accuracy={"min": 0.9}, p99_latency_ms={"max": 1000}),
                  classifier())  # fmt: skip
    write_report(report, tmp_path / "2")
    document = json.loads((tmp_path / "2" / REPORT_FILE).read_text())
    assert document["passed"] is True and document["version"] == "2"
    assert set(document["metrics"]) == {"accuracy", "p99_latency_ms"}
    assert document["checks"][0]["message"] == "accuracy 1 >= min 0.9"
