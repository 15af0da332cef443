"""The validation gate: a version runs on held-out data while it loads, before it can take
traffic, and serves only if every threshold of model.yaml's ``validation:`` block holds
(docs/validation.md).

Thresholds follow MLflow: ``min``/``max`` bound the metric; ``min_absolute_change`` and
``min_relative_change`` compare it with a baseline, the version serving now or ``version:N``,
run on the same rows. With no baseline (the model's first version), the change thresholds are
skipped and the report says so. A gate that cannot run (missing data, an output the metric
cannot read, a model that fails) fails: the version never serves on an unchecked gate.

The report goes to ``<version>/validation_report.json`` and is served at
``GET /v2/models/{model}/versions/{v}/validation``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from modelserve.config.validation import METRICS, MetricThreshold, Validation
from modelserve.runtimes.base import Arrays
from modelserve.serving.datasets import DataError, features_for, read_table
from modelserve.serving.evaluation import (
    LATENCY_METRICS,
    EvaluationError,
    Predict,
    compute_metrics,
    measure_latency,
    predict_all,
)
from modelserve.types import TensorSpec

log = logging.getLogger("modelserve.serving.gates")

__all__ = [
    "REPORT_FILE",
    "Check",
    "GateReport",
    "Subject",
    "find_data",
    "latency_of",
    "run_gate",
    "write_report",
]

REPORT_FILE = "validation_report.json"


@dataclass(frozen=True, slots=True)
class Subject:
    """A model version the gate evaluates: how to call it and what it looks like."""

    version: str
    predict: Predict
    inputs: tuple[TensorSpec, ...]
    batch: int
    """Rows per call (the model's max_batch_size); 0 when it has no batch dimension."""
    classes: tuple[str, ...] = ()
    """Class labels in the order of its probability columns, when it tells them."""
    latency: dict[str, float] | None = None
    """Latency metrics measured earlier (a serving version's, from its own load)."""
    timed: bool = True
    """Whether its latency may be measured now; not for a version serving live traffic (that
    would time the traffic too): it compares by its own load-time figures, or not at all."""


@dataclass(slots=True)
class Check:
    metric: str
    threshold: str
    """min, max, min_absolute_change or min_relative_change."""
    limit: float
    value: float | None
    bound: float | None
    """What the value had to reach (or stay under), baseline applied; None when skipped."""
    baseline: float | None
    passed: bool
    message: str


@dataclass(slots=True)
class GateReport:
    model: str
    version: str
    passed: bool
    data: str
    rows: int
    label: str | None
    compare_to: str
    baseline_version: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    baseline_metrics: dict[str, float] | None = None
    checks: list[Check] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    on_fail: str = "reject"
    evaluated_at: str = ""
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def reason(self) -> str:
        """The index's reason for a rejected version: each failed threshold with its value."""
        return "validation failed: " + "; ".join(self.failures)


def latency_of(report: GateReport | None) -> dict[str, float] | None:
    """The latency metrics a version's own gate measured while it loaded (None: none were)."""
    if report is None:
        return None
    found = {k: v for k, v in report.metrics.items() if k in LATENCY_METRICS}
    return found or None


def find_data(validation: Validation, version_dir: Path, model_dir: Path) -> Path:
    """The data file, looked for in the version folder, then the model folder (never outside)."""
    for folder in (version_dir, model_dir):
        path = (folder / validation.data).resolve()
        if folder.resolve() in path.parents and path.is_file():
            return path
    raise DataError(
        f"validation data '{validation.data}' not found in {version_dir} or {model_dir}"
    )


def _greater(metric: str) -> bool:
    return METRICS[metric]


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _checks(
    metric: str, threshold: MetricThreshold, value: float, baseline: float | None, note: str
) -> list[Check]:
    greater = _greater(metric)
    checks = []
    if threshold.min is not None:
        ok = value >= threshold.min
        text = f"{metric} {_fmt(value)} {'>=' if ok else '<'} min {_fmt(threshold.min)}"
        checks.append(Check(metric, "min", threshold.min, value, threshold.min, None, ok, text))
    if threshold.max is not None:
        ok = value <= threshold.max
        text = f"{metric} {_fmt(value)} {'<=' if ok else '>'} max {_fmt(threshold.max)}"
        checks.append(Check(metric, "max", threshold.max, value, threshold.max, None, ok, text))
    changes = (
        ("min_absolute_change", threshold.min_absolute_change),
        ("min_relative_change", threshold.min_relative_change),
    )
    for kind, limit in changes:
        if limit is None:
            continue
        if baseline is None:
            text = f"{metric} {kind} {_fmt(limit)} skipped: {note}"
            checks.append(Check(metric, kind, limit, value, None, None, True, text))
            continue
        if kind == "min_absolute_change":
            bound = baseline + limit if greater else baseline - limit
        else:
            bound = baseline * (1 + limit) if greater else baseline * (1 - limit)
        ok = value >= bound if greater else value <= bound
        sign = (">=" if ok else "<") if greater else ("<=" if ok else ">")
        text = (
            f"{metric} {_fmt(value)} {sign} {_fmt(bound)} (baseline {_fmt(baseline)}, "
            f"{kind} {_fmt(limit)})"
        )
        checks.append(Check(metric, kind, limit, value, bound, baseline, ok, text))
    return checks


def _evaluate(
    subject: Subject, validation: Validation, features: Arrays, truth: Any | None
) -> dict[str, float]:
    wanted = list(validation.metrics)
    quality = [m for m in wanted if m not in LATENCY_METRICS]
    metrics: dict[str, float] = {}
    if quality:
        predictions = predict_all(subject.predict, features, subject.batch)
        found = compute_metrics(quality, predictions, truth, validation.output, subject.classes)
        metrics.update(found)
    if any(m in LATENCY_METRICS for m in wanted):
        latency = subject.latency
        if latency is None and subject.timed:
            latency = measure_latency(subject.predict, features, subject.batch > 0)
        metrics.update({m: v for m, v in (latency or {}).items() if m in wanted})
    return metrics


def _load(validation: Validation, path: Path, inputs: tuple[TensorSpec, ...]) -> tuple[Arrays, Any]:
    table = read_table(path)
    truth = None
    if validation.label is not None:
        if validation.label not in table.columns:
            raise DataError(
                f"{path}: no label column '{validation.label}' (columns: {sorted(table.columns)})"
            )
        truth = table.columns[validation.label]
    exclude = [validation.label] if validation.label else []
    return features_for(table, inputs, exclude), truth


def run_gate(
    model: str,
    validation: Validation,
    version_dir: Path,
    model_dir: Path,
    candidate: Subject,
    baseline: Subject | None,
    baseline_note: str = "no version to compare with",
) -> GateReport:
    """Evaluate the candidate (and the baseline, when a change threshold needs one) and judge
    every threshold. Never raises for a gate that cannot run: the report fails with why."""
    started = time.monotonic()
    report = GateReport(
        model=model,
        version=candidate.version,
        passed=False,
        data=validation.data,
        rows=0,
        label=validation.label,
        compare_to=validation.compare_to,
        baseline_version=baseline.version if baseline is not None else None,
        on_fail=validation.on_fail,
        evaluated_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    try:
        path = find_data(validation, version_dir, model_dir)
        features, truth = _load(validation, path, candidate.inputs)
        report.rows = len(next(iter(features.values())))
        report.metrics = _evaluate(candidate, validation, features, truth)
    except (DataError, EvaluationError) as exc:
        report.failures.append(f"cannot evaluate version {candidate.version}: {exc}")
    except Exception as exc:  # the model itself failed on the data
        detail = f"{type(exc).__name__}: {exc}"
        report.failures.append(f"version {candidate.version} failed on the data: {detail}")
    if report.failures:
        report.duration_s = time.monotonic() - started
        return report
    needs_baseline = [m for m, t in validation.metrics.items() if t.compares]
    baseline_metrics: dict[str, float] = {}
    note = baseline_note
    if needs_baseline and baseline is not None:
        try:
            features, truth = _load(validation, path, baseline.inputs)
            baseline_metrics = _evaluate(baseline, validation, features, truth)
            report.baseline_metrics = baseline_metrics
        except Exception as exc:  # the baseline's failure fails the comparison, closed
            detail = f"{type(exc).__name__}: {exc}"
            report.failures.append(f"cannot evaluate the baseline version {baseline.version}: "
                                   f"{detail}")  # fmt: skip
    elif needs_baseline:
        report.notes.append(f"change thresholds skipped: {note}")
    for metric, threshold in validation.metrics.items():
        value = report.metrics[metric]
        if not np.isfinite(value):
            report.failures.append(f"{metric} is {value}")
            continue
        reference = baseline_metrics.get(metric)
        why = note if baseline is None else f"version {baseline.version} has no {metric}"
        report.checks.extend(_checks(metric, threshold, value, reference, why))
    report.failures.extend(c.message for c in report.checks if not c.passed)
    report.passed = not report.failures
    report.duration_s = round(time.monotonic() - started, 3)
    return report


def write_report(report: GateReport, version_dir: Path) -> None:
    """``<version>/validation_report.json``, written atomically; a read-only folder is logged,
    not an error (the report is still served from memory)."""
    path = version_dir / REPORT_FILE
    tmp = path.with_name(f".{REPORT_FILE}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot write %s: %s", path, exc)
