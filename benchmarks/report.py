"""The results: one aligned plain-text table for the terminal, Markdown and JSON for the record."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from batch import BatchRow
from loadgen import Point

MS, MLS, TRT = "modelserve", "MLServer", "Triton"


@dataclass(frozen=True)
class Spec:
    """What one row measures."""

    scenario: str  # "tiny" | "mlp" | "images"
    server: str  # "modelserve" | "MLServer" | "Triton" (PyTriton)
    batching: str  # "off" | "on"
    transport: str  # "REST JSON" | "REST binary" | "REST image" | "gRPC"
    tool: str  # "wrk" | "perf_analyzer" | "h2load"
    model: str
    concurrency: int
    rows_per_request: int = 1
    logging: str = "off"  # "off" | "file" (payload logging to a file) | "monitor" (monitoring)

    @property
    def key(self) -> str:
        transport = self.transport.replace(" ", "-").lower()
        logging = f"/logging-{self.logging}" if self.logging != "off" else ""
        return (
            f"{self.scenario}/{transport}/{self.tool}/{self.model}/{self.server}"
            f"/batching-{self.batching}{logging}/c{self.concurrency}"
        )

    @property
    def pair_key(self) -> tuple[str, ...]:
        return (
            self.scenario,
            self.transport,
            self.tool,
            self.model,
            self.batching,
            self.logging,
            str(self.concurrency),
        )


@dataclass
class Row:
    spec: Spec
    point: Point | None = None
    na: str = ""  # why there is no point
    ratio: float | None = None  # modelserve req/s / MLServer req/s, same run
    ratio_triton: float | None = None  # modelserve req/s / Triton req/s, same run
    efficiency: float | None = None  # served rows/s / raw batch-64 rows/s


@dataclass
class ServerInfo:
    name: str
    repo: str
    startup_s: float
    idle_rss_mb: float
    ratio_startup: float | None = None
    ratio_rss: float | None = None
    ratio_startup_triton: float | None = None
    ratio_rss_triton: float | None = None


@dataclass
class Results:
    meta: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    raw: list[dict[str, Any]] = field(default_factory=list)
    client: list[dict[str, Any]] = field(default_factory=list)
    servers: list[ServerInfo] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    batch: list[BatchRow] = field(default_factory=list)


def _num(value: float | None, digits: int = 0) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.2f}x"


ROW_HEADERS = (
    "server",
    "transport (tool)",
    "model",
    "conc",
    "batching",
    "logging",
    "req/s",
    "rows/s",
    "p50 ms",
    "p99 ms",
    "errors",
    "CPU µs/req",
    "vs TRT",
    "vs MLS",
    "eff",
)
RIGHT = {
    "conc",
    "req/s",
    "rows/s",
    "p50 ms",
    "p99 ms",
    "errors",
    "CPU µs/req",
    "vs TRT",
    "vs MLS",
    "eff",
}


def _row_cells(row: Row) -> list[str]:
    s, p = row.spec, row.point
    head = [
        s.server,
        f"{s.transport} ({s.tool})",
        s.model,
        str(s.concurrency),
        s.batching,
        s.logging,
    ]
    if p is None:
        return [*head, "n/a", "", "", "", "", "", "", "", ""]
    errors = f"{p.errors} !" if p.errors else "0"
    eff = ""
    if row.efficiency is not None:
        eff = f"{row.efficiency:.1%}" if row.efficiency < 0.1 else f"{row.efficiency:.0%}"
    return [
        *head,
        _num(p.req_s),
        _num(p.rows_s),
        _num(p.p50_ms, 2),
        _num(p.p99_ms, 2),
        errors,
        _num(p.cpu_us_per_req),
        _ratio(row.ratio_triton),
        _ratio(row.ratio),
        eff,
    ]


def _align(headers: Sequence[str], rows: list[list[str]], right: set[str]) -> list[str]:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def fmt(cells: Sequence[str]) -> str:
        out = [
            c.rjust(w) if h in right else c.ljust(w)
            for c, w, h in zip(cells, widths, headers, strict=True)
        ]
        return "  ".join(out).rstrip()

    return [fmt(headers), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]


def _md(headers: Sequence[str], rows: list[list[str]], right: set[str]) -> list[str]:
    rule = ["---:" if h in right else "---" for h in headers]
    return ["| " + " | ".join(r) + " |" for r in (list(headers), rule, *rows)]


CLIENT_HEADERS = ("protocol", "client", "calls", "CPU µs/call", "µs/call", "CPU vs tritonclient")


def _client_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """One row per client; the CPU ratio against tritonclient on the same protocol."""
    triton = {r["protocol"]: r["cpu_us_per_call"] for r in rows if r["client"].startswith("trit")}
    cells = []
    for r in rows:
        base = triton.get(r["protocol"])
        ratio = r["cpu_us_per_call"] / base if base and not r["client"].startswith("trit") else None
        cells.append(
            [
                r["protocol"],
                r["client"],
                str(r["calls"]),
                _num(r["cpu_us_per_call"]),
                _num(r["wall_us_per_call"]),
                _ratio(ratio),
            ]
        )
    return cells


def _sections(results: Results) -> list[tuple[str, Sequence[str], list[list[str]], set[str]]]:
    rows = [_row_cells(r) for r in results.rows]
    raw_headers = ("model", "call", "batch", "calls/s", "rows/s", "µs/call")
    raw = [
        [
            r["model"],
            r["call"],
            str(r["batch"]),
            _num(r["calls_s"]),
            _num(r["rows_s"]),
            _num(r["us_per_call"], 1),
        ]
        for r in results.raw
    ]
    srv_headers = (
        "server",
        "repository",
        "startup to ready s",
        "idle RSS MB",
        "vs TRT start",
        "vs TRT RSS",
        "vs MLS start",
        "vs MLS RSS",
    )
    srv = [
        [
            s.name,
            s.repo,
            _num(s.startup_s, 2),
            _num(s.idle_rss_mb),
            _ratio(s.ratio_startup_triton),
            _ratio(s.ratio_rss_triton),
            _ratio(s.ratio_startup),
            _ratio(s.ratio_rss),
        ]
        for s in results.servers
    ]
    batch_headers = (
        "model",
        "engine",
        "rows",
        "rows/s",
        "vs raw",
        "raw rows/s",
        "batch",
        "batch p50 ms",
        "batch p99 ms",
        "processing s",
        "wall s",
    )
    batch_rows = [
        [
            b.model,
            b.engine,
            _num(b.rows),
            _num(b.rows_s) if not b.na else f"n/a ({b.na[:60]})",
            "" if math.isnan(b.vs_raw) else f"{b.vs_raw:.0%}",
            _num(b.raw_rows_s),
            str(b.batch_size),
            _num(b.batch_p50_ms, 3),
            _num(b.batch_p99_ms, 3),
            _num(b.processing_s, 2),
            _num(b.wall_s, 1),
        ]
        for b in results.batch
    ]
    return [
        ("Served (server pinned to core 0, load generator to core 1)", ROW_HEADERS, rows, RIGHT),
        (
            "Batch inference (modelserve batch run; vs raw = rows/s over the raw ceiling's "
            "rows/s at the same batch size)",
            batch_headers,
            batch_rows,
            set(batch_headers[2:]),
        ),
        (
            "Client CPU per request (iris_onnx, 1 row, sequential; client on core 1)",
            CLIENT_HEADERS,
            _client_rows(results.client),
            set(CLIENT_HEADERS[2:]),
        ),
        (
            "Raw in-process ceiling (core 0, one thread)",
            raw_headers,
            raw,
            {"batch", "calls/s", "rows/s", "µs/call"},
        ),
        (
            "Servers",
            srv_headers,
            srv,
            {
                "startup to ready s",
                "idle RSS MB",
                "vs TRT start",
                "vs TRT RSS",
                "vs MLS start",
                "vs MLS RSS",
            },
        ),
    ]


def _error_lines(results: Results) -> list[str]:
    lines = []
    for row in results.rows:
        if row.point is not None and row.point.errors:
            lines.append(f"! {row.spec.key}: {row.point.errors} errors ({row.point.error_detail})")
        elif row.point is None:
            lines.append(f"n/a {row.spec.key}: {row.na}")
    return lines


def render_text(results: Results) -> str:
    out: list[str] = []
    for title, headers, rows, right in _sections(results):
        if rows:
            out += ["", title, *_align(headers, rows, right)]
    out += ["", *_error_lines(results), *results.notes]
    return "\n".join(out) + "\n"


def render_markdown(results: Results) -> str:
    meta = results.meta
    out = ["# Benchmark results", ""]
    out += [f"- {k}: {v}" for k, v in meta.items()]
    for title, headers, rows, right in _sections(results):
        if rows:
            out += ["", f"## {title}", "", *_md(headers, rows, right)]
    extra = [*_error_lines(results), *results.notes]
    if extra:
        out += ["", "## Notes", "", *(f"- {line}" for line in extra)]
    return "\n".join(out) + "\n"


def finish(results: Results) -> None:
    """Fill in serving efficiency and the modelserve/Triton and modelserve/MLServer ratios;
    sort the rows."""
    raw = {(r["model"], r["batch"]): r for r in results.raw if r["call"] != "predict_proba"}
    pairs: dict[tuple[str, ...], dict[str, Row]] = {}
    for row in results.rows:
        point = row.point
        if point is None or math.isnan(point.req_s):
            continue
        ceiling = raw.get((row.spec.model, 64))
        if ceiling:
            row.efficiency = point.rows_s / float(ceiling["rows_s"])
        pairs.setdefault(row.spec.pair_key, {})[row.spec.server] = row
    for row in results.rows:
        if row.spec.server != MS or row.point is None or math.isnan(row.point.req_s):
            continue
        # The 4-feature classifier: MLServer serves it with scikit-learn; we serve it both with
        # scikit-learn and as ONNX, and each of ours is compared with MLServer's best offer.
        key = row.spec.pair_key
        if row.spec.model.startswith("iris_"):
            key = (*key[:3], "iris_sklearn", *key[4:])
        theirs = pairs.get(key, {}).get(MLS)
        if theirs and theirs.point and theirs.point.req_s > 0:
            row.ratio = row.point.req_s / theirs.point.req_s
        # Triton serves every model we do (PyTriton, the same artifacts): the same model's row.
        triton = pairs.get(row.spec.pair_key, {}).get(TRT)
        if triton and triton.point and triton.point.req_s > 0:
            row.ratio_triton = row.point.req_s / triton.point.req_s
    order = {"tiny": 0, "mlp": 1, "images": 2}

    def sort_key(r: Row) -> tuple[object, ...]:
        s = r.spec
        return (
            order[s.scenario],
            s.transport,
            s.tool,
            s.model,
            s.concurrency,
            s.batching,
            s.logging,
            (s.server != MS, s.server == MLS),
        )

    results.rows.sort(key=sort_key)


def write(results: Results, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "latest.md").write_text(render_markdown(results))
    doc = {
        "meta": results.meta,
        "rows": [
            {"key": r.spec.key, **asdict(r.spec), "result": asdict(r.point) if r.point else None}
            | {
                "na": r.na,
                "ratio_vs_triton": r.ratio_triton,
                "ratio_vs_mlserver": r.ratio,
                "efficiency": r.efficiency,
            }
            for r in results.rows
        ],
        "raw": results.raw,
        "client": results.client,
        "servers": [asdict(s) for s in results.servers],
        "batch": [{"key": b.key, **asdict(b)} for b in results.batch],
        "notes": results.notes,
    }
    text = json.dumps(_clean(doc), indent=2, default=str, allow_nan=False)
    (directory / "latest.json").write_text(text + "\n")


def _clean(value: Any) -> Any:
    """NaN (no measurement) becomes null, so that the file is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value
