"""The ``validation:`` block of model.yaml: held-out data a version must do well enough on before
it takes traffic (docs/validation.md). Threshold semantics are MLflow's."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["METRICS", "MetricThreshold", "Validation"]

METRICS: dict[str, bool] = {
    # classification (labels)
    "accuracy": True,
    "balanced_accuracy": True,
    "precision_macro": True,
    "recall_macro": True,
    "f1_macro": True,
    "f1_weighted": True,
    # classification (probabilities)
    "log_loss": False,
    "roc_auc": True,
    # regression
    "mae": False,
    "mse": False,
    "rmse": False,
    "r2": True,
    "max_error": False,
    "mape": False,
    # speed: one row per call, on the loading machine
    "mean_latency_ms": False,
    "p50_latency_ms": False,
    "p90_latency_ms": False,
    "p95_latency_ms": False,
    "p99_latency_ms": False,
}
"""Every metric the gate computes, and whether greater is better."""

COMPARE_PATTERN = re.compile(r"^(serving|version:[1-9][0-9]*)$")


class MetricThreshold(BaseModel):
    """Bounds on one metric. ``min``/``max`` bound the value; the changes compare it with the
    baseline's (``compare_to``) as MLflow does: where greater is better the value must reach
    ``baseline + min_absolute_change`` and ``baseline * (1 + min_relative_change)``, otherwise
    stay under ``baseline - min_absolute_change`` and ``baseline * (1 - min_relative_change)``.
    A negative change tolerates that much regression."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min: float | None = None
    max: float | None = None
    min_absolute_change: float | None = None
    min_relative_change: float | None = None

    @model_validator(mode="after")
    def _something(self) -> MetricThreshold:
        if all(
            v is None
            for v in (self.min, self.max, self.min_absolute_change, self.min_relative_change)
        ):
            raise ValueError(
                "give at least one of min, max, min_absolute_change, min_relative_change"
            )
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self

    @property
    def compares(self) -> bool:
        return self.min_absolute_change is not None or self.min_relative_change is not None


class Validation(BaseModel):
    """Run the version on held-out data during load; it serves only if every threshold holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: str = Field(
        min_length=1,
        description="CSV, Parquet, NPZ or JSONL file in the version folder or the model folder.",
    )
    label: str | None = Field(
        default=None,
        description="Column with the truth (needed by every metric but the latencies).",
    )
    metrics: dict[str, MetricThreshold] = Field(
        min_length=1, description=f"Metric -> thresholds. Metrics: {', '.join(METRICS)}."
    )
    output: str | None = Field(
        default=None,
        description="Output holding the prediction (default: 'label', else 'prediction', "
        "else the first output).",
    )
    compare_to: str = Field(
        default="serving",
        description="Baseline of the change thresholds: 'serving' (the version serving now) "
        "or 'version:N'.",
    )
    on_fail: Literal["reject", "shadow"] = Field(
        default="reject",
        description="reject: the version never serves. shadow: it stays loaded, never "
        "answers a request, and gets a copy of the model's traffic after each answer, its "
        "answers compared with the serving version's (docs/experiments.md).",
    )

    @field_validator("metrics")
    @classmethod
    def _known(cls, value: dict[str, MetricThreshold]) -> dict[str, MetricThreshold]:
        unknown = sorted(set(value) - set(METRICS))
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; known: {', '.join(METRICS)}")
        return value

    @field_validator("compare_to")
    @classmethod
    def _baseline(cls, value: str) -> str:
        if not COMPARE_PATTERN.match(value):
            raise ValueError("compare_to is 'serving' or 'version:N'")
        return value

    @model_validator(mode="after")
    def _label_when_needed(self) -> Validation:
        quality = [m for m in self.metrics if not m.endswith("_latency_ms")]
        if quality and self.label is None:
            raise ValueError(f"metrics {quality} need 'label': the column with the truth")
        return self

    @property
    def baseline_version(self) -> str | None:
        """N for ``compare_to: version:N``; None for ``serving``."""
        return self.compare_to.split(":", 1)[1] if ":" in self.compare_to else None
