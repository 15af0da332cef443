"""Model monitoring as configured: the ``monitoring:`` key of model.yaml, validated by pydantic.
docs/monitoring.md documents every key, its default and why; monitoring/service.py runs it.

```yaml
monitoring:
  sample_rate: 1.0              # share of requests stored
  task: classification          # classification | regression (inferred when left out)
  prediction_output: label      # the output compared with the labels (inferred)
  reference: reference.csv      # training rows: CSV, Parquet, NPZ or JSONL (drift)
  feature_names: [sepal_length, sepal_width, petal_length, petal_width]
  window: {rows: 1000, seconds: 60}
  threshold: null               # null: calibrated on the reference; or a fixed distance
  drift_share: 0.5
  retention_days: 30
  alerts: {min_accuracy: 0.9, accuracy_window: 24h, min_label_coverage: 0.1,
           webhook: https://hooks.example.com/retrain}
```

A model is monitored when its model.yaml has the key (``monitoring: {}`` takes every default).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["WINDOWS", "AlertsConfig", "DriftWindow", "MonitoringConfig"]

WINDOWS: dict[str, float | None] = {"1h": 3600.0, "24h": 86400.0, "7d": 7 * 86400.0, "all": None}
"""The accuracy windows by name, in seconds (None: every stored prediction)."""


class DriftWindow(BaseModel):
    """How many predictions one drift test looks at: a window closes after ``rows`` rows or
    ``seconds`` seconds, whichever comes first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rows: int = Field(default=1000, ge=10, le=1_000_000, description="Rows per drift window.")
    seconds: float = Field(
        default=60.0, gt=0, le=86400, description="Longest a drift window stays open."
    )
    min_rows: int = Field(
        default=50,
        ge=1,
        description="A window closed by time with fewer rows is not tested (too few rows for "
        "a meaningful test); its rows carry over to the next window.",
    )


class AlertsConfig(BaseModel):
    """When to raise an alert (an event on the bus, and a POST to ``webhook``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    drift: bool = Field(default=True, description="Alert when the model drifts.")
    min_accuracy: float | None = Field(
        default=None, ge=0, le=1, description="Alert when accuracy falls below this."
    )
    accuracy_window: Literal["1h", "24h", "7d", "all"] = Field(
        default="24h", description="The window whose accuracy is compared with min_accuracy."
    )
    min_labels: int = Field(
        default=30,
        ge=1,
        description="Labels a window needs before its accuracy can raise an alert.",
    )
    min_label_coverage: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Alert when label coverage (labelled / predicted, 24h window) stays below "
        "this.",
    )
    webhook: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="POST every alert event here as JSON (retried with backoff).",
    )
    webhook_retries: int = Field(default=5, ge=0, le=20, description="Retries of one POST.")
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=300, description="Per attempt.")


class MonitoringConfig(BaseModel):
    """The ``monitoring:`` key of model.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_rate: float = Field(
        default=1.0, ge=0, le=1, description="Share of requests stored, decided per request."
    )
    task: Literal["classification", "regression"] | None = Field(
        default=None,
        description="What the predictions are; inferred from the compared output when left "
        "out (integer, boolean or BYTES, or a 2-D score output: classification; else "
        "regression).",
    )
    prediction_output: str | None = Field(
        default=None,
        description="The output compared with the labels (default: 'label' when the model has "
        "one, else its first output).",
    )
    reference: str | None = Field(
        default=None,
        description="Training rows (CSV, Parquet, NPZ or JSONL) in the version or model "
        "folder: the reference of input drift.",
    )
    feature_names: list[str] | None = Field(
        default=None,
        min_length=1,
        description="Names of the input's columns (default: '<input>[0]'…'<input>[N-1]').",
    )
    window: DriftWindow = Field(default_factory=DriftWindow)
    threshold: float | None = Field(
        default=None,
        gt=0,
        description="Fixed drift threshold on the test's value for every feature (default: "
        "calibrated on the reference, mean + 3 sigma of chunk-to-reference distances).",
    )
    drift_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Share of features that must drift for the model to drift.",
    )
    retention_days: float = Field(
        default=30.0, gt=0, description="Predictions and labels older than this are deleted."
    )
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)

    @model_validator(mode="after")
    def _unique_names(self) -> MonitoringConfig:
        names = self.feature_names
        if names is not None and len(set(names)) != len(names):
            raise ValueError("feature_names must be unique")
        return self
