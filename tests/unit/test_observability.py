"""The observability pieces on their own: statistics rules, histogram accumulation (and the
prometheus_client internals it relies on), multiprocess aggregation, gauges, logs, ids."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from modelserve.errors import ErrorCode
from modelserve.observability import ConnectionCounter, ModelSample, Observability
from modelserve.observability.accumulate import Accumulator
from modelserve.observability.context import CURRENT, usable_id
from modelserve.observability.exposition import MetricsListener, render
from modelserve.observability.logs import (
    JsonFormatter,
    RequestIdFilter,
    TextFormatter,
    configure_logging,
)
from modelserve.observability.stats import StatsBook
from modelserve.scheduling.batcher import Completed
from tests.conftest import ROOT
from tests.harness import run_python


def _values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def test_statistics_rules() -> None:
    book = StatsBook()
    stats = book.version("m", "1")
    stats.succeeded(rows=4, total_ns=100, queue_ns=10, input_ns=5, infer_ns=70, output_ns=15)
    stats.executed(batch_size=6, input_ns=5, infer_ns=70, output_ns=15)
    stats.succeeded(rows=2, total_ns=90, queue_ns=20, input_ns=4, infer_ns=70, output_ns=6)
    stats.failed(total_ns=7)
    snap = book.snapshot("m", "1")
    assert (snap.inference_count, snap.execution_count) == (6, 1)
    assert (snap.success.count, snap.success.ns, snap.fail.count, snap.fail.ns) == (2, 190, 1, 7)
    counts = {snap.queue.count, snap.compute_input.count, snap.compute_infer.count}
    assert counts == {snap.compute_output.count} == {2}
    assert (snap.queue.ns, snap.compute_infer.ns) == (30, 140)
    (batch,) = snap.batch_stats
    assert (batch.batch_size, batch.compute_infer.count, batch.compute_infer.ns) == (6, 1, 70)
    assert snap.last_inference > 0
    empty = book.snapshot("other", "2")
    assert (empty.name, empty.inference_count, empty.batch_stats) == ("other", 0, ())


def test_accumulator_flushes_into_a_prometheus_histogram() -> None:
    registry = CollectorRegistry()
    histogram = Histogram("h", "h", ["m"], registry=registry, buckets=(1.0, 2.0, 5.0))
    accumulator = Accumulator((1, 2, 5))
    for value in (0, 1, 2, 3, 7, 7):
        accumulator.observe(value)
    accumulator.flush(lambda: histogram.labels("x"), 0.5)
    accumulator.flush(lambda: histogram.labels("never"))  # nothing new: no child made
    values = _values(generate_latest(registry).decode())
    bucket = {le: values[("h_bucket", (("le", le), ("m", "x")))] for le in ("1.0", "2.0", "5.0")}
    assert bucket == {"1.0": 2, "2.0": 3, "5.0": 4}
    assert values[("h_bucket", (("le", "+Inf"), ("m", "x")))] == 6
    assert values[("h_count", (("m", "x"),))] == 6
    assert values[("h_sum", (("m", "x"),))] == 10.0
    assert not any("never" in str(key) for key in values)


def _record(observability: Observability) -> None:
    done = Completed({}, batch_size=3, queue_ns=1_000, compute_ns=2_000_000, leads_batch=True)
    for _ in range(5):
        observability.infer_succeeded("m", "1", 3, done, 0, 10, 20, None)
    observability.infer_failed(("m", "1"), ("m", "1"), ErrorCode.INVALID_ARGUMENT, 0, None, True)


def test_metrics_are_flushed_at_scrape_time() -> None:
    observability = Observability(process_metrics=False)
    observability.watch_models(lambda: [ModelSample("m", "1", "READY", 2, 1, 0.5)])
    _record(observability)
    body, content_type = asyncio.run(observability.exposition())
    assert content_type.startswith("text/plain")
    values = _values(body.decode())
    m = {"model": "m", "version": "1"}
    assert values[_key("modelserve_inference_requests_total", **m, outcome="success")] == 5
    assert values[_key("modelserve_inference_requests_total", **m, outcome="invalid_argument")] == 1
    assert values[_key("modelserve_inference_request_duration_seconds_count", **m)] == 6
    assert values[_key("modelserve_inference_batch_size_sum", **m)] == 15
    assert values[_key("modelserve_inference_compute_duration_seconds_sum", **m)] == 0.01
    assert values[_key("modelserve_model_queue_depth", **m)] == 2
    assert values[_key("modelserve_model_batches_in_flight", **m)] == 1
    assert values[_key("modelserve_model_state", **m, state="READY")] == 1
    assert not any(name.startswith("process_") for name, _ in values)


def test_gauges_of_a_removed_version_go_away() -> None:
    observability = Observability(process_metrics=False)
    samples = [ModelSample("m", "1", "READY", 0, 0, 1.0), ModelSample("m", "2", "LOADING")]
    observability.watch_models(lambda: samples)
    observability.refresh()
    text = generate_latest(observability.registry).decode()
    assert 'version="2"' in text and "modelserve_model_load_duration_seconds" in text
    samples.pop()
    observability.refresh()
    text = generate_latest(observability.registry).decode()
    assert 'version="2"' not in text and 'version="1"' in text


WORKER = """
import sys
from modelserve.observability import Observability
from tests.unit.test_observability import _record
observability = Observability(process_metrics=False, multiprocess_dir=sys.argv[1])
observability.watch_models(lambda: [])
_record(observability)
observability.refresh()
"""


def test_multiprocess_mode_adds_up_the_workers(tmp_path: Path) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):
        result = run_python(WORKER, str(tmp_path), env=env)
        assert result.returncode == 0, result.stderr
    body, _ = render(CollectorRegistry(), str(tmp_path), None)
    values = _values(body.decode())
    m = {"model": "m", "version": "1"}
    assert values[_key("modelserve_inference_requests_total", **m, outcome="success")] == 10
    assert values[_key("modelserve_inference_request_duration_seconds_count", **m)] == 12
    assert values[_key("modelserve_inference_batch_size_sum", **m)] == 30


async def test_metrics_listener_answers_only_metrics() -> None:
    observability = Observability(process_metrics=False)
    listener = MetricsListener(observability.exposition)
    await listener.start("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{listener.port}") as client:
            ok = await client.get("/metrics")
            assert ok.status_code == 200 and "modelserve_http_connections" in ok.text
            openmetrics = await client.get(
                "/metrics", headers={"accept": "application/openmetrics-text"}
            )
            assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
            assert (await client.get("/other")).status_code == 404
            assert (await client.post("/metrics")).status_code == 405
    finally:
        await listener.stop()


def test_connection_counter() -> None:
    counter = ConnectionCounter()
    assert counter.count == 0
    counter.follow(lambda: 5)
    counter.follow(lambda: 1)
    assert counter.count == 6


def test_request_ids() -> None:
    assert usable_id("abc-123") and usable_id("x" * 128)
    for bad in (None, "", "x" * 129, "a\r\nb", "caf\u00e9", "tab\there"):
        assert not usable_id(bad)
    observability = Observability(process_metrics=False)
    ctx = observability.begin("http", "GET", "/", None)
    ctx.adopt_id("v2")
    assert ctx.request_id == "v2"
    observability.end(ctx, 200)
    given = observability.begin("http", "GET", "/", "given")
    given.adopt_id("v2")
    assert given.request_id == "given"
    observability.end(given, 200)
    made = observability.begin("http", "GET", "/", "bad\nid")
    assert len(made.request_id) == 32 and made.request_id != "bad\nid"
    made.adopt_id("too late")
    assert made.request_id != "too late"
    observability.end(made, 200)
    assert CURRENT.get() is None


def _record_line(formatter: logging.Formatter, request_id: str | None) -> str:
    record = logging.LogRecord(
        "modelserve.x", logging.WARNING, __file__, 1, "hello %s", ("w",), None
    )
    observability = Observability(process_metrics=False)
    ctx = observability.begin("http", "GET", "/", request_id) if request_id else None
    try:
        RequestIdFilter().filter(record)
    finally:
        if ctx is not None:
            observability.end(ctx, 200)
    return formatter.format(record)


def test_log_formats() -> None:
    line = json.loads(_record_line(JsonFormatter(), "r-1"))
    assert line["message"] == "hello w" and line["request_id"] == "r-1"
    assert line["level"] == "WARNING" and line["logger"] == "modelserve.x"
    assert "request_id" not in json.loads(_record_line(JsonFormatter(), None))
    text = _record_line(TextFormatter(), "r-2")
    assert text.endswith("WARNING modelserve.x [r-2] hello w")


def test_configured_logging_writes_json_lines_in_the_background() -> None:
    out = io.StringIO()
    level = logging.getLogger().level
    handle = configure_logging("info", "json", out)
    try:
        log = logging.getLogger("modelserve.test")
        log.info("one %d", 1)
        log.debug("not shown")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("two")
    finally:
        handle.close()
        logging.getLogger().setLevel(level)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["one 1", "two"]
    assert "ValueError: boom" in lines[1]["exception"]
    assert handle.dropped == 0


def test_every_metric_is_documented_and_the_dashboard_uses_only_real_ones() -> None:
    observability = Observability()
    observability.watch_models(lambda: [ModelSample("m", "1", "READY", 0, 0, 1.0)])
    _record(observability)
    body, _ = asyncio.run(observability.exposition())
    kinds = {f.name: f.type for f in text_string_to_metric_families(body.decode())}
    families = set(kinds)
    docs = (ROOT / "docs" / "metrics.md").read_text()
    ours = {n for n in families if n.startswith("modelserve_") and not n.endswith("_created")}
    assert len(ours) == 11
    for name in ours:
        shown = f"{name}_total" if kinds[name] == "counter" else name
        assert f"`{shown}`" in docs, f"{shown} is not in docs/metrics.md"
    dashboard = (ROOT / "deploy" / "grafana" / "modelserve-dashboard.json").read_text()
    exprs = [
        target["expr"]
        for panel in json.loads(dashboard)["panels"]
        for target in panel.get("targets", [])
    ]
    used = {name for expr in exprs for name in re.findall(r"\b((?:modelserve|process)_\w+)", expr)}
    known = {f"{n}{s}" for n in families for s in ("", "_total", "_bucket", "_sum", "_count")}
    assert used and used <= known, used - known
