"""The model page's monitoring section rendered from monitoring API documents."""

from __future__ import annotations

from typing import Any

from modelserve.transports.http.dashboard_monitoring import monitoring_section, number


def _version(task: str, metrics: dict[str, Any], drift: Any) -> dict[str, Any]:
    windows = {w: dict(metrics) for w in ("1h", "24h", "7d", "all")}
    return {
        "predictions": 400,
        "labelled": 100,
        "label_coverage": 0.25,
        "task": task,
        "metrics": windows,
        "drift": drift,
    }


DRIFT = {
    "drifted": True,
    "window_rows": 120,
    "window": "open",
    "features": {
        "x[0]": {"method": "ks", "value": 0.4, "threshold": 0.2, "drifted": True, "psi": 1.5,
                 "nan_share": 0.0, "out_of_range_share": 0.25},
        "<b>colour": {"method": "chi2", "value": 0.01, "threshold": 0.2, "drifted": False,
                      "psi": 0.0, "nan_share": 0.1, "unseen": 2, "unseen_examples": ["x"]},
    },
}  # fmt: skip


def test_a_model_that_is_not_monitored_says_how_to_turn_it_on() -> None:
    html = monitoring_section(None)
    assert "Not monitored" in html and "<code>monitoring:</code>" in html
    assert 'id="monitoring" data-live' in html


def test_a_store_that_cannot_be_read_is_said_escaped() -> None:
    html = monitoring_section({"error": "the monitoring store cannot be read: disk <full>"})
    assert "Monitoring error: the monitoring store cannot be read: disk &lt;full&gt;" in html
    assert 'class="alert"' in html and "Not monitored" not in html


def test_classifier_and_regressor_figures_per_version_and_window() -> None:
    doc = {
        "model": "m",
        "versions": {
            "1": _version("classification", {"labelled": 100, "accuracy": 0.91234}, DRIFT),
            "2": _version("regression", {"labelled": 100, "mae": 1.5, "rmse": 2.25}, None),
        },
    }
    html = monitoring_section(doc)
    # one row per version and window, the figures of each task in their own columns
    assert html.count('<th scope="row">1</th><td>all time</td>') == 1
    assert html.count("<td>last hour</td>") == 2
    assert '<td class="num">0.9123</td>' in html and '<td class="num">2.25</td>' in html
    for head in ("Accuracy", "F1 (macro)", "MAE", "RMSE", "Label coverage"):
        assert f'<th scope="col">{head}</th>' in html
    assert "25.0 %" in html
    assert "drifted: 1 of 2 features (open window, 120 rows)" in html
    assert "no reference" in html  # version 2 has none
    # the drifted feature's row stands out; names are escaped
    assert '<tr class="alert"><th scope="row">1</th><td>x[0]</td><td>ks</td>' in html
    assert "&lt;b&gt;colour" in html and "<b>colour" not in html
    assert "2 unseen" in html


def test_drift_before_a_window_and_drift_that_cannot_be_measured() -> None:
    doc = {
        "model": "m",
        "versions": {
            "1": _version("classification", {"labelled": 0}, {"window_rows": 0, "features": {}}),
            "2": _version("classification", {"labelled": 0}, {"error": "reference missing"}),
        },
    }
    html = monitoring_section(doc)
    assert "no window tested yet" in html
    assert "unavailable: reference missing" in html
    assert '<table id="monitoring-drift">' in html and "None yet." in html


def test_numbers() -> None:
    assert number(None) == "—" and number(0.123456) == "0.1235" and number(3) == "3"
    assert number(True) == "yes"


def test_the_shadow_comparison_shows_with_or_without_monitoring() -> None:
    classes = {"version": "2", "mirrored": 40, "dropped": 1, "failed": 0, "compared": 40,
               "agreement_ratio": 0.75, "abs_diff": None}  # fmt: skip
    html = monitoring_section(None, classes)
    assert "Not monitored" in html and '<table id="monitoring-shadow">' in html
    assert '<td class="num warn">75.0 %</td>' in html
    diff = {"count": 10, "mean": 0.5, "p50": 0.4, "p99": 1.25, "max": 1.5}
    numbers = {"version": "3", "mirrored": 10, "dropped": 0, "failed": 2, "compared": 10,
               "agreement_ratio": None, "abs_diff": diff}  # fmt: skip
    html = monitoring_section({"model": "m", "versions": {}}, numbers)
    assert '<td class="num">1.25</td><td class="num">1.5</td>' in html
    assert "monitoring-shadow" not in monitoring_section(None, {"version": None})
