"""The model page's experiment section rendered from experiments API documents."""

from __future__ import annotations

from typing import Any

from modelserve.transports.http.dashboard_experiments import experiment_section


def _canary(state: str = "running") -> dict[str, Any]:
    return {
        "model": "m",
        "state": state,
        "origin": "config",
        "weights": {"1": 75.0, "2": 25.0},
        "step": 2,
        "baseline": "1",
        "candidate": "2",
        "started": 1764130000.0,
        "spec": {"canary": {"version": "2", "steps": [5, 25, 50, 100]}},
        "history": [
            {"time": 1764130000.0, "verdict": "start", "reason": "started", "figures": {}},
            {"time": 1764130060.0, "verdict": "promote", "reason": "checks <passed>",
             "figures": {"error_rate": 0.001234, "weights": {"1": 75, "2": 25}}},
        ],
        "arms": {
            "1": {"arm": "baseline", "requests": 300, "errors": 3, "p99_ms": 3.1, "accuracy": 0.9},
            "2": {"arm": "candidate", "requests": 0, "errors": 0, "p99_ms": None,
                  "accuracy": None},
        },
    }  # fmt: skip


def test_no_experiment_says_how_to_start_one() -> None:
    html = experiment_section("m", None)
    assert "No traffic experiment" in html and "modelserve experiment start" in html
    assert "<form" not in html


def test_a_running_canary_has_its_step_arms_history_and_three_buttons() -> None:
    html = experiment_section("m<x>", _canary())
    assert ">2 of 4<" in html and ">model.yaml<" in html
    assert '<th scope="row">1</th><td>baseline</td><td class="num">75 %</td>' in html
    assert '<td class="num">1.00 %</td>' in html  # 3 errors of 300
    assert '<td class="num">—</td>' in html  # no request yet: no rate, no p99
    # newest first, escaped, figures flattened
    assert html.index("checks &lt;passed&gt;") < html.index(">started<")
    assert "error_rate=0.001234" in html and "weights={&quot;1&quot;:75" in html
    for action, label in (("promote", "Promote"), ("rollback", "Roll back"), ("stop", "Stop")):
        assert f'action="/ui/models/m&lt;x&gt;/experiment/{action}"' in html
        assert f">{label}</button>" in html


def test_a_split_can_only_be_stopped_and_an_ended_one_not_at_all() -> None:
    split = {**_canary(), "candidate": None, "baseline": None, "step": None, "spec": {}}
    html = experiment_section("m", split)
    assert ">split<" in html and "/experiment/stop" in html
    assert "/experiment/rollback" not in html and "/experiment/promote" not in html
    ended = experiment_section("m", _canary("rolled_back"))
    assert ">rolled back<" in ended and "<form" not in ended


def test_an_unreadable_experiment_is_said_escaped() -> None:
    html = experiment_section("m", {"error": "store <down>"})
    assert "cannot be read: store &lt;down&gt;" in html
