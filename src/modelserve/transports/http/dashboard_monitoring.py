"""The model page's monitoring section (docs/dashboard.md), rendered from the monitoring API's
document (docs/monitoring.md): predictions, labels and label coverage per version, accuracy (or
MAE and RMSE) per version and window, the input drift of every feature against its threshold,
and the shadow comparison of a mirrored version (routing/shadow.py: agreement or differences).

Its tables sit in elements marked ``data-live``: the page's script fetches the page again every
2 s and swaps in those whose content changed (dashboard.js), so they stay current without a
second renderer in JavaScript, and read without JavaScript at all.
"""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["monitoring_section", "number", "table"]

WINDOW_NAMES = {"1h": "last hour", "24h": "last 24 h", "7d": "last 7 days", "all": "all time"}
CLASSIFICATION = (
    ("accuracy", "Accuracy"),
    ("precision_macro", "Precision (macro)"),
    ("recall_macro", "Recall (macro)"),
    ("f1_macro", "F1 (macro)"),
)
REGRESSION = (("mae", "MAE"), ("rmse", "RMSE"))


def number(value: Any, digits: int = 4) -> str:
    """A figure for a cell: ``—`` for none, floats to ``digits`` significant digits."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return escape(str(value))


def _share(value: Any) -> str:
    return "—" if value is None else f"{100 * float(value):.1f} %"


def table(table_id: str, caption: str, head: list[str], rows: list[str]) -> str:
    """A semantic table in its scrolling box: a caption, scoped column headers, the rows (each
    a ``<tr>`` whose first cell is a ``<th scope="row">``)."""
    columns = "".join(f'<th scope="col">{escape(h)}</th>' for h in head)
    body = "".join(rows) or f'<tr><td colspan="{len(head)}">None yet.</td></tr>'
    return (
        f'<div class="scroll"><table id="{table_id}"><caption>{escape(caption)}</caption>'
        f"<thead><tr>{columns}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def _drift_state(drift: dict[str, Any] | None) -> tuple[str, str]:
    """The drift cell of a version: its text (the verdict, the window) and its class."""
    if drift is None:
        return "no reference", ""
    if "error" in drift:
        return f"unavailable: {drift['error']}", ""
    rows = int(drift.get("window_rows", 0))
    if not rows:
        return "no window tested yet", ""
    window = f"{'open' if drift.get('window') == 'open' else 'last'} window, {rows} rows"
    features = drift.get("features", {})
    drifted = sum(1 for f in features.values() if f.get("drifted"))
    if drift.get("drifted"):
        return f"drifted: {drifted} of {len(features)} features ({window})", "alert"
    if drifted:
        return (
            f"{drifted} of {len(features)} features drifted, fewer than drift_share ({window})",
            "warn",
        )
    return f"no drift ({window})", "ok"


def _versions_table(versions: dict[str, Any]) -> str:
    rows = []
    for version, doc in versions.items():
        drift, tone = _drift_state(doc.get("drift"))
        rows.append(
            f'<tr><th scope="row">{escape(version)}</th><td>{escape(str(doc.get("task")))}</td>'
            f'<td class="num">{number(doc.get("predictions"))}</td>'
            f'<td class="num">{number(doc.get("labelled"))}</td>'
            f'<td class="num">{_share(doc.get("label_coverage"))}</td>'
            f'<td class="{tone}">{escape(drift)}</td></tr>'
        )
    return table(
        "monitoring-versions",
        "Stored predictions, labels received and input drift per version",
        ["Version", "Task", "Predictions", "Labelled", "Label coverage", "Drift"],
        rows,
    )


def _accuracy_table(versions: dict[str, Any]) -> str:
    tasks = {doc.get("task") for doc in versions.values()}
    figures = (*(CLASSIFICATION if "classification" in tasks else ()),)
    figures += REGRESSION if "regression" in tasks else ()
    rows = []
    for version, doc in versions.items():
        for window, label in WINDOW_NAMES.items():
            values = doc.get("metrics", {}).get(window, {})
            cells = "".join(f'<td class="num">{number(values.get(k))}</td>' for k, _ in figures)
            rows.append(
                f'<tr><th scope="row">{escape(version)}</th><td>{label}</td>'
                f'<td class="num">{number(values.get("labelled", 0))}</td>{cells}</tr>'
            )
    return table(
        "monitoring-accuracy",
        "Accuracy per version and window, over the predictions made in the window that have "
        "their label",
        ["Version", "Window", "Labelled", *(title for _, title in figures)],
        rows,
    )


def _drift_table(versions: dict[str, Any]) -> str:
    rows = []
    for version, doc in versions.items():
        drift = doc.get("drift") or {}
        for feature, f in drift.get("features", {}).items():
            drifted = bool(f.get("drifted"))
            unusual = (
                f"{f['unseen']} unseen" if "unseen" in f else _share(f.get("out_of_range_share"))
            )
            rows.append(
                f'<tr class="{"alert" if drifted else ""}">'
                f'<th scope="row">{escape(version)}</th><td>{escape(feature)}</td>'
                f"<td>{escape(str(f.get('method', '')))}</td>"
                f'<td class="num">{number(f.get("value"))}</td>'
                f'<td class="num">{number(f.get("threshold"))}</td>'
                f"<td>{'<strong>drifted</strong>' if drifted else 'no'}</td>"
                f'<td class="num">{number(f.get("psi"))}</td>'
                f'<td class="num">{_share(f.get("nan_share"))}</td>'
                f'<td class="num">{unusual}</td></tr>'
            )
    return table(
        "monitoring-drift",
        "Input drift per feature in the last tested window: the test's value against its threshold",
        [
            "Version",
            "Feature",
            "Test",
            "Value",
            "Threshold",
            "Drifted",
            "PSI",
            "Missing",
            "Out of range or unseen",
        ],
        rows,
    )


def _shadow_table(shadow: dict[str, Any] | None) -> str:
    """The shadow comparison: how often the mirrored version agreed with the answers served
    (classes), or how far its numbers were from them (absolute differences)."""
    if not shadow or shadow.get("version") is None:
        return ""
    diff = shadow.get("abs_diff") or {}
    agreement = shadow.get("agreement_ratio")
    tone = "" if agreement is None else "ok" if agreement >= 0.99 else "warn"
    row = (
        f'<tr><th scope="row">{escape(str(shadow["version"]))}</th>'
        f'<td class="num">{number(shadow.get("mirrored"))}</td>'
        f'<td class="num">{number(shadow.get("compared"))}</td>'
        f'<td class="num">{number(shadow.get("dropped"))}</td>'
        f'<td class="num">{number(shadow.get("failed"))}</td>'
        f'<td class="num {tone}">{_share(agreement)}</td>'
        f'<td class="num">{number(diff.get("mean"))}</td>'
        f'<td class="num">{number(diff.get("p99"))}</td>'
        f'<td class="num">{number(diff.get("max"))}</td></tr>'
    )
    return table(
        "monitoring-shadow",
        "Shadow traffic: the mirrored version's answers compared with those served "
        "(docs/experiments.md)",
        [
            "Mirrored version",
            "Answered",
            "Compared",
            "Dropped",
            "Failed",
            "Agreement",
            "Mean |difference|",
            "p99 |difference|",
            "Max |difference|",
        ],
        [row],
    )


def monitoring_section(doc: dict[str, Any] | None, shadow: dict[str, Any] | None = None) -> str:
    """The section: the figures (and the shadow comparison, monitored or not), or why there
    are none."""
    if doc is None:
        content = (
            '<p class="note">Not monitored: add a <code>monitoring:</code> key to its '
            "model.yaml (docs/monitoring.md).</p>"
        )
    elif "error" in doc:
        content = f'<p class="alert">Monitoring error: {escape(doc["error"])}</p>'
    else:
        versions = doc.get("versions", {})
        content = _versions_table(versions) + _accuracy_table(versions) + _drift_table(versions)
    return (
        '<section aria-labelledby="monitoring-h"><h2 id="monitoring-h">Monitoring</h2>'
        f'<div id="monitoring" data-live>{content}{_shadow_table(shadow)}</div></section>'
    )
