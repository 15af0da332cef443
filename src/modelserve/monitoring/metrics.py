"""Model monitoring's Prometheus metrics, on the injected registry.

The figures (accuracy, errors, coverage, drift, alerts) are read from the shared store, so
with ``--workers N`` every process sets the same values; in multiprocess mode the gauges keep
the most recent value of the live processes.

- ``modelserve_model_accuracy{model,version,window}``: classification accuracy per window.
- ``modelserve_model_mae{model,version,window}``, ``modelserve_model_rmse{…}``: regression.
- ``modelserve_label_coverage{model,version}``: labelled / predicted, every stored prediction.
- ``modelserve_feature_drift{model,version,feature,method}``: the last window's test value.
- ``modelserve_drift_detected{model,version}``: 1 while the last window drifted.
- ``modelserve_alert_active{model,version,kind}``: 1 while an alert of ``kind`` is raised.
- ``modelserve_monitoring_predictions_total{model,outcome}``: predicted rows ``stored``, or
  requests ``dropped`` (the store was too slow: its queue was full) or ``failed`` (the store
  refused the write).
"""

from __future__ import annotations

from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["MonitoringMetrics"]

_MODE: Literal["livemostrecent"] = "livemostrecent"


class MonitoringMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.accuracy = Gauge(
            "modelserve_model_accuracy",
            "Classification accuracy of the labelled predictions of a model version, per window.",
            ("model", "version", "window"),
            registry=registry,
            multiprocess_mode=_MODE,
        )
        self.mae = Gauge(
            "modelserve_model_mae",
            "Mean absolute error of the labelled predictions of a model version, per window.",
            ("model", "version", "window"),
            registry=registry,
            multiprocess_mode=_MODE,
        )
        self.rmse = Gauge(
            "modelserve_model_rmse",
            "Root mean squared error of the labelled predictions of a version, per window.",
            ("model", "version", "window"),
            registry=registry,
            multiprocess_mode=_MODE,
        )
        self.coverage = Gauge(
            "modelserve_label_coverage",
            "Labelled predictions / stored predictions of a model version.",
            ("model", "version"),
            registry=registry,
            multiprocess_mode=_MODE,
        )
        self.feature_drift = Gauge(
            "modelserve_feature_drift",
            "Drift test value of a feature in the last tested window (method: ks, chi2, "
            "wasserstein, jensen_shannon).",
            ("model", "version", "feature", "method"),
            registry=registry,
            multiprocess_mode=_MODE,
        )
        self.drift_detected = Gauge(
            "modelserve_drift_detected",
            "1 while the last tested window of a model version drifted.",
            ("model", "version"),
            registry=registry,
            multiprocess_mode=_MODE,
        )
        self.alert_active = Gauge(
            "modelserve_alert_active",
            "1 while an alert of this kind (drift, accuracy, label_coverage) is raised.",
            ("model", "version", "kind"),
            registry=registry,
            multiprocess_mode=_MODE,
        )
        self.predictions = Counter(
            "modelserve_monitoring_predictions",
            "Monitored predictions: rows stored, or requests dropped (the store's queue was "
            "full) or failed (the store refused the write).",
            ("model", "outcome"),
            registry=registry,
        )
