"""The model page's experiment section (docs/dashboard.md), rendered from the experiments API's
document (``GET /v2/models/{model}/experiment``, docs/experiments.md): its state and step, each
arm's weight and figures in the current step, the decision history, and the promote, roll back
and stop buttons (forms posting to ``/ui/models/{m}/experiment/{action}``: keyboard-usable and
working without JavaScript).

The figures, the buttons and the history sit in ``data-live`` elements of their own, which the
page's script swaps in when their content changed: the buttons change only with the
experiment's state, so keyboard focus on them survives the refreshes in between.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from typing import Any

from modelserve.transports.http.dashboard_monitoring import number, table

__all__ = ["ACTIONS", "experiment_section"]

ACTIONS = {"promote": "Promote", "rollback": "Roll back", "stop": "Stop"}
"""The buttons: the action posted and the button's label."""
HISTORY_ROWS = 50
"""The newest decisions shown; the API has them all (the last 500)."""
ACTIVE = ("running", "paused")


def _time(value: Any) -> str:
    if not isinstance(value, int | float):
        return "—"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _figures(figures: Any) -> str:
    if not isinstance(figures, dict) or not figures:
        return ""
    parts = []
    for key, value in figures.items():
        shown = (
            json.dumps(value, separators=(",", ":"))
            if isinstance(value, dict | list)
            else (number(value) if not isinstance(value, str) else value)
        )
        parts.append(f"{key}={shown}")
    return escape(", ".join(parts))


def _facts(doc: dict[str, Any]) -> str:
    spec = doc.get("spec") or {}
    canary = spec.get("canary") if isinstance(spec, dict) else None
    kind = "canary" if doc.get("candidate") else "split"
    step = doc.get("step")
    if step is not None and isinstance(canary, dict) and canary.get("steps"):
        step_text = f"{step} of {len(canary['steps'])}"
    else:
        step_text = "—" if step is None else str(step)
    items = [
        ("State", str(doc.get("state", "—")).replace("_", " ")),
        ("Kind", kind),
        ("Step", step_text),
        ("Baseline", str(doc.get("baseline") or "—")),
        ("Candidate", str(doc.get("candidate") or "—")),
        ("Started", _time(doc.get("started"))),
        ("Started by", "the API" if doc.get("origin") == "api" else "model.yaml"),
    ]
    cells = "".join(
        f'<div><dt>{escape(k)}</dt><dd data-field="{escape(k)}">{escape(v)}</dd></div>'
        for k, v in items
    )
    return f'<dl class="facts" id="experiment-facts">{cells}</dl>'


def _arms(doc: dict[str, Any]) -> str:
    weights = doc.get("weights") or {}
    rows = []
    for version, arm in (doc.get("arms") or {}).items():
        requests, errors = arm.get("requests", 0), arm.get("errors", 0)
        rate = f"{100 * errors / requests:.2f} %" if requests else "—"
        rows.append(
            f'<tr><th scope="row">{escape(version)}</th><td>{escape(str(arm.get("arm", "")))}</td>'
            f'<td class="num">{number(weights.get(version))} %</td>'
            f'<td class="num">{number(requests)}</td><td class="num">{number(errors)}</td>'
            f'<td class="num">{rate}</td><td class="num">{number(arm.get("p99_ms"))}</td>'
            f'<td class="num">{number(arm.get("accuracy"))}</td></tr>'
        )
    return table(
        "experiment-arms",
        "Arms: weight and figures of the current step, every worker's requests added up",
        ["Version", "Arm", "Weight", "Requests", "Errors", "Error rate", "p99 (ms)", "Accuracy"],
        rows,
    )


def _history(doc: dict[str, Any]) -> str:
    history = list(doc.get("history") or [])[-HISTORY_ROWS:]
    rows = [
        f'<tr class="{"alert" if entry.get("verdict") == "rollback" else ""}">'
        f'<th scope="row">{_time(entry.get("time"))}</th>'
        f"<td>{escape(str(entry.get('verdict', '')))}</td>"
        f"<td>{escape(str(entry.get('reason', '')))}</td>"
        f'<td class="figures">{_figures(entry.get("figures"))}</td></tr>'
        for entry in reversed(history)
    ]
    return table(
        "experiment-history",
        f"Decisions, newest first (the last {HISTORY_ROWS}; the API keeps 500)",
        ["Time", "Verdict", "Reason", "Figures"],
        rows,
    )


def _buttons(model: str, doc: dict[str, Any]) -> str:
    if doc.get("state") not in ACTIVE:
        return ""
    actions = ("promote", "rollback", "stop") if doc.get("candidate") else ("stop",)
    quoted = escape(model, quote=True)
    forms = "".join(
        f'<form method="post" action="/ui/models/{quoted}/experiment/{action}">'
        f'<button type="submit"{" class=danger" if action != "promote" else ""}>'
        f"{ACTIONS[action]}</button></form>"
        for action in actions
    )
    return f'<div class="buttons">{forms}</div>'


def experiment_section(model: str, doc: dict[str, Any] | None) -> str:
    """The section: the experiment, or how to start one."""
    buttons = history = ""
    if doc is None:
        content = (
            '<p class="note">No traffic experiment: start one with <code>modelserve experiment '
            "start</code> or an <code>experiment:</code> key in its model.yaml "
            "(docs/experiments.md).</p>"
        )
    elif "error" in doc:
        content = f'<p class="alert">The experiment cannot be read: {escape(doc["error"])}</p>'
    else:
        content, buttons, history = _facts(doc) + _arms(doc), _buttons(model, doc), _history(doc)
    return (
        '<section aria-labelledby="experiment-h"><h2 id="experiment-h">Experiment</h2>'
        f'<div id="experiment" data-live>{content}</div>'
        f'<div id="experiment-actions" data-live>{buttons}</div>'
        f'<div id="experiment-history-live" data-live>{history}</div></section>'
    )
