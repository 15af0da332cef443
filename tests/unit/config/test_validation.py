"""The validation block of model.yaml."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from modelserve.config.validation import METRICS, Validation


def block(**changes: object) -> dict[str, object]:
    return {
        "data": "holdout.parquet",
        "label": "target",
        "metrics": {
            "accuracy": {"min": 0.9},
            "f1_macro": {"min_relative_change": -0.01},
            "p99_latency_ms": {"max": 20},
        },
        "compare_to": "serving",
        "on_fail": "reject",
        **changes,
    }


def test_the_issue_block_parses() -> None:
    validation = Validation.model_validate(block())
    assert validation.metrics["accuracy"].min == 0.9
    assert validation.metrics["f1_macro"].compares
    assert validation.baseline_version is None
    assert Validation.model_validate(block(compare_to="version:3")).baseline_version == "3"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"metrics": {"acuracy": {"min": 1}}}, "unknown metric"),
        ({"metrics": {"accuracy": {}}}, "give at least one of"),
        ({"metrics": {"accuracy": {"min": 0.9, "max": 0.5}}}, "min 0.9 is above max 0.5"),
        ({"metrics": {"accuracy": {"threshold": 0.9}}}, "Extra inputs"),
        ({"compare_to": "latest"}, "compare_to is 'serving' or 'version:N'"),
        ({"compare_to": "version:0"}, "compare_to is"),
        ({"label": None}, "need 'label'"),
        ({"metrics": {}}, "at least 1 item"),
    ],
)
def test_mistakes_say_why(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Validation.model_validate(block(**changes))


def test_latency_only_needs_no_label() -> None:
    validation = Validation.model_validate(
        {"data": "d.csv", "metrics": {"p99_latency_ms": {"max": 5}}}
    )
    assert validation.label is None


def test_every_metric_has_a_direction() -> None:
    assert METRICS["accuracy"] and not METRICS["rmse"] and not METRICS["p99_latency_ms"]
