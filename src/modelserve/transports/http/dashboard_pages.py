"""The dashboard's HTML, rendered on the server from the JSON documents (dashboard_data.py).

Every table is in the HTML as sent, so the pages read without JavaScript; dashboard.js then
refreshes them every 2 s (the overview's from the JSON summary; the model page's by fetching the
page again and swapping in its ``data-live`` elements) and draws the charts with the vendored
uPlot (static/). Semantic tables with captions and scoped headers, labelled buttons in forms
(keyboard-usable, working without JavaScript), one column on a narrow window.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from modelserve.transports.http.dashboard_experiments import experiment_section
from modelserve.transports.http.dashboard_monitoring import monitoring_section

__all__ = ["model_page", "overview_page"]


def _text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:g}"
    return escape(str(value))


def _page(title: str, body: str, script: str = "", charts: bool = False) -> bytes:
    chart_assets = (
        '<link rel="stylesheet" href="/ui/static/uPlot.min.css">'
        '<script src="/ui/static/uPlot.iife.min.js" defer></script>'
        if charts
        else ""
    )
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · modelserve</title>"
        '<link rel="stylesheet" href="/ui/static/dashboard.css">'
        f"{chart_assets}"
        '<script src="/ui/static/dashboard.js" defer></script>'
        "</head><body>"
        '<header><nav aria-label="Dashboard"><a href="/ui">modelserve</a></nav>'
        f"<h1>{escape(title)}</h1></header><main>{body}</main>{script}</body></html>"
    ).encode()


def _bytes(value: int) -> str:
    return f"{value / (1024 * 1024):.1f} MiB"


def _uptime(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s"


def _server_section(server: dict[str, Any]) -> str:
    health = "ready" if server["ready"] else "live, not ready" if server["live"] else "not live"
    items = [
        ("Server", f"{server['name']} {server['version']}"),
        ("Health", health),
        ("Uptime", _uptime(server["uptime_s"])),
        ("CPU", f"{server['cpu_percent']:g} %"),
        ("Memory (RSS)", _bytes(server["rss_bytes"])),
        ("Load average", " ".join(f"{v:.2f}" for v in server["load_average"])),
        ("Model control", server["model_control_mode"]),
    ]
    cells = "".join(
        f'<div><dt>{escape(k)}</dt><dd data-field="{escape(k)}">{escape(v)}</dd></div>'
        for k, v in items
    )
    return (
        '<section aria-labelledby="server-h"><h2 id="server-h">Server</h2>'
        f'<dl class="facts" id="server">{cells}</dl></section>'
    )


MODEL_COLUMNS = (
    ("model", "Model"),
    ("version", "Version"),
    ("state", "State"),
    ("runtime", "Runtime"),
    ("format", "ONNX or native"),
    ("validation", "Validation"),
    ("requests_per_s", "Requests/s"),
    ("p50_ms", "p50 (ms)"),
    ("p99_ms", "p99 (ms)"),
    ("error_rate", "Error rate"),
    ("queue_depth", "Queue depth"),
)


def _model_row(row: dict[str, Any]) -> str:
    cells = []
    for key, _ in MODEL_COLUMNS:
        value = row.get(key)
        if key == "model":
            link = f'<a href="/ui/models/{escape(row["model"], quote=True)}">{_text(value)}</a>'
            cells.append(f'<th scope="row">{link}</th>')
        elif key == "state" and row.get("reason"):
            cells.append(f'<td title="{escape(row["reason"])}">{_text(value)}</td>')
        elif key == "validation" and value is not None:
            detail = escape(row.get("validation_detail", ""), quote=True)
            cells.append(
                f'<td data-key="{key}" class="{"ok" if value == "passed" else "alert"}" '
                f'title="{detail}">{_text(value)}</td>'
            )
        else:
            cells.append(f'<td data-key="{key}">{_text(value)}</td>')
    return f"<tr>{''.join(cells)}</tr>"


def _models_table(rows: list[dict[str, Any]], window_s: int) -> str:
    head = "".join(f'<th scope="col">{escape(label)}</th>' for _, label in MODEL_COLUMNS)
    body = "".join(_model_row(r) for r in rows) or (
        f'<tr><td colspan="{len(MODEL_COLUMNS)}">No models in the repository.</td></tr>'
    )
    return (
        '<section aria-labelledby="models-h"><h2 id="models-h">Models</h2>'
        '<div class="scroll"><table id="models">'
        f"<caption>Every model version; traffic over the last {window_s} s</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div></section>"
    )


def _sinks_table(sinks: list[dict[str, Any]]) -> str:
    if not sinks:
        rows = '<tr><td colspan="5">No payload sink is configured.</td></tr>'
    else:
        rows = "".join(
            f'<tr><th scope="row">{escape(s["sink"])}</th><td>{s["sent"]}</td>'
            f"<td>{s['dropped']}</td><td>{s['failed']}</td><td>{s['queue']}</td></tr>"
            for s in sinks
        )
    return (
        '<section aria-labelledby="sinks-h"><h2 id="sinks-h">Payload logging</h2>'
        '<div class="scroll"><table id="sinks">'
        "<caption>Inference events per sink (docs/payload-logging.md)</caption>"
        '<thead><tr><th scope="col">Sink</th><th scope="col">Sent</th>'
        '<th scope="col">Dropped</th><th scope="col">Failed</th>'
        '<th scope="col">Queue</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></div></section>"
    )


def overview_page(summary: dict[str, Any]) -> bytes:
    body = (
        _server_section(summary["server"])
        + _models_table(summary["models"], summary["window_s"])
        + _sinks_table(summary["payload_sinks"])
    )
    return _page("Overview", body, '<script>window.MS_PAGE = "overview";</script>')


CHARTS = (
    ("requests", "Requests per second"),
    ("latency", "Latency p50, p95, p99 (ms)"),
    ("errors", "Errors per second"),
    ("batch", "Mean batch size (rows per execution)"),
)


def model_page(doc: dict[str, Any], admin_buttons: bool) -> bytes:
    name = doc["model"]
    quoted = escape(name, quote=True)
    rows = "".join(
        f'<tr><th scope="row">{escape(v["version"])}</th><td>{escape(v["state"])}</td>'
        f"<td>{escape(v['reason'])}</td><td>{len(v['series']['t'])}</td></tr>"
        for v in doc["versions"]
    )
    versions = (
        '<section aria-labelledby="versions-h"><h2 id="versions-h">Versions</h2>'
        '<div class="scroll" id="versions-live" data-live><table id="versions">'
        "<caption>Versions of this model</caption>"
        '<thead><tr><th scope="col">Version</th><th scope="col">State</th>'
        '<th scope="col">Reason</th><th scope="col">Seconds recorded</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></div></section>"
    )
    buttons = ""
    if admin_buttons:
        buttons = (
            '<section aria-labelledby="control-h"><h2 id="control-h">Control</h2>'
            '<div class="buttons">'
            f'<form method="post" action="/ui/models/{quoted}/load">'
            f'<button type="submit">Load {escape(name)}</button></form>'
            f'<form method="post" action="/ui/models/{quoted}/unload">'
            f'<button type="submit" class="danger">Unload {escape(name)}</button></form>'
            "</div></section>"
        )
    charts = "".join(
        f'<figure class="chart"><figcaption id="{key}-h">{escape(title)}</figcaption>'
        f'<div id="chart-{key}" role="img" aria-labelledby="{key}-h"></div></figure>'
        for key, title in CHARTS
    )
    live = (
        '<section aria-labelledby="charts-h"><h2 id="charts-h">Last 15 minutes</h2>'
        '<p class="note">Refreshed every 2 s; one line per version.</p>'
        f'<div class="charts">{charts}</div></section>'
    )
    config = json.dumps(doc["config"], indent=2) if doc["config"] is not None else "not loaded"
    config_section = (
        '<section aria-labelledby="config-h"><h2 id="config-h">Configuration</h2>'
        f'<pre class="config" tabindex="0">{escape(config)}</pre></section>'
    )
    model_json = json.dumps(name).replace("<", "\\u003c")  # no </script> inside
    script = f'<script>window.MS_PAGE = "model"; window.MS_MODEL = {model_json};</script>'

    body = (
        versions
        + buttons
        + experiment_section(name, doc.get("experiment"))
        + live
        + monitoring_section(doc.get("monitoring"), doc.get("shadow"))
        + config_section
    )
    return _page(f"Model {name}", body, script, charts=True)
