"""Log lines as JSON or text, with the request id; logging configured to write in the background."""

from __future__ import annotations

import io
import json
import logging

from modelserve.observability import Observability
from modelserve.observability.logs import (
    JsonFormatter,
    RequestIdFilter,
    TextFormatter,
    configure_logging,
)


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
