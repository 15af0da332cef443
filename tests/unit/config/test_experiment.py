"""The experiment: key of model.yaml and of the experiments API."""

from __future__ import annotations

import pytest

from modelserve.config.experiment import parse_experiment


def test_the_issue_example_parses_with_its_defaults() -> None:
    config = parse_experiment(
        {
            "candidates": [{"version": "1", "weight": 90}, {"version": "2", "weight": 10}],
            "sticky": {"header": "x-user-id"},
            "mirror": {"version": "3", "percent": 100},
        }
    )
    assert config.versions() == {"1", "2", "3"}
    canary = parse_experiment({"canary": {"version": "2"}}).canary
    assert canary is not None and canary.steps == [5, 25, 50, 100]
    assert canary.min_requests == 200 and canary.on_fail == "rollback" and not canary.dry_run
    assert canary.checks.max_error_rate_increase == 0.01 and canary.checks.min_labels == 200


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({}, "needs 'candidates', 'canary' or 'mirror'"),
        ({"candidates": [{"version": "1", "weight": 90}]}, "sum to 100"),
        (
            {"candidates": [{"version": "1", "weight": 50}, {"version": "1", "weight": 50}]},
            "appears once",
        ),
        ({"canary": {"version": "2", "steps": [50, 25, 100]}}, "must increase"),
        ({"canary": {"version": "2", "steps": [5, 50]}}, "must be 100"),
        ({"canary": {"version": "2", "on_fail": "explode"}}, "on_fail"),
        ({"sticky": {"header": "a", "parameter": "b"}, "mirror": {"version": "2"}}, "exactly one"),
        ({"canary": {"version": "2"}, "mirror": {"version": "2"}}, "also takes live traffic"),
        ({"mirror": {"version": "x"}}, "mirror.version"),
        ({"canary": {"version": "2"}, "candidates": [{"version": "1", "weight": 100}]}, "exclude"),
        ({"canary": {"version": "2", "surprise": 1}}, "surprise"),
    ],
)
def test_mistakes_are_named(document: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match="invalid experiment") as info:
        parse_experiment(document)
    assert message in str(info.value)
