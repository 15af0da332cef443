"""Logging set-up, done once by the CLI (never at import): JSON lines or human-readable text,
every record stamped with the id of the request being served, and the writing done by a
background thread so that a slow or full stderr never blocks the event loop.

The event loop only stamps the record, resolves its message and puts it on a bounded queue;
when the queue is full the record is dropped and counted (a warning tells how many once the
queue drains), never waited for.
"""

from __future__ import annotations

import copy
import logging
import queue
import sys
import threading
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

import orjson

from modelserve.observability.context import CURRENT

__all__ = [
    "JsonFormatter",
    "LogFormat",
    "LoggingHandle",
    "RequestIdFilter",
    "TextFormatter",
    "configure_logging",
    "resolve_format",
]

LogFormat = Literal["auto", "json", "text"]
QUEUE_SIZE = 10_000
CLOSE_TIMEOUT_S = 2.0


class RequestIdFilter(logging.Filter):
    """Stamps ``record.request_id`` with the id of the request being served (None outside)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = CURRENT.get()
        if not hasattr(record, "request_id"):
            record.request_id = ctx.request_id if ctx is not None else None
        return True


def _iso_time(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id when
    in a request, the record's ``fields`` (the access log's), exception text when any."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": _iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            doc["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if fields:
            doc.update(fields)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exception"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(doc, default=str).decode()


class TextFormatter(logging.Formatter):
    """``2025-01-01T12:00:00.000+00:00 INFO modelserve.server [request-id] message``."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        line = (
            f"{_iso_time(record.created)} {record.levelname} {record.name} "
            f"{f'[{request_id}] ' if request_id else ''}{record.getMessage()}"
        )
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line


class _QueueHandler(logging.Handler):
    """Resolves the record on the caller's thread, queues it, never blocks."""

    def __init__(self, records: queue.Queue[logging.LogRecord | None]) -> None:
        super().__init__()
        self.records = records
        self._formatter = logging.Formatter()
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        record = copy.copy(record)
        record.msg = record.getMessage()
        record.args = None
        if record.exc_info:
            record.exc_text = self._formatter.formatException(record.exc_info)
            record.exc_info = None
        try:
            self.records.put_nowait(record)
        except queue.Full:
            self.dropped += 1


class LoggingHandle:
    """The running log writer; ``close`` flushes what is queued (bounded) and detaches it."""

    def __init__(self, handler: _QueueHandler, writer: logging.Handler, level: int) -> None:
        self._handler = handler
        self._writer = writer
        self._records = handler.records
        self._thread = threading.Thread(target=self._run, name="modelserve-log", daemon=True)
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(level)
        self._thread.start()

    @property
    def dropped(self) -> int:
        return self._handler.dropped

    def _run(self) -> None:
        reported = 0
        while True:
            record = self._records.get()
            if record is None:
                return
            self._writer.handle(record)
            if self._handler.dropped > reported and self._records.empty():
                lost, reported = self._handler.dropped - reported, self._handler.dropped
                self._writer.handle(
                    logging.makeLogRecord(
                        {
                            "name": "modelserve.logs",
                            "levelno": logging.WARNING,
                            "levelname": "WARNING",
                            "msg": f"{lost} log record(s) dropped: the log output is too slow",
                        }
                    )
                )

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        logging.getLogger().removeHandler(self._handler)
        try:
            self._records.put(None, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)
        self._writer.flush()


def resolve_format(fmt: LogFormat, stream: TextIO) -> Literal["json", "text"]:
    """``auto``: text on a terminal, JSON lines otherwise (files, pipes, log collectors)."""
    if fmt != "auto":
        return fmt
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


def configure_logging(
    level: str, fmt: LogFormat = "auto", stream: TextIO | None = None
) -> LoggingHandle:
    """Send every log record (the access log included) to ``stream`` (stderr by default) as
    JSON lines or text, through a background writer. Call ``close`` on the result at exit."""
    stream = stream if stream is not None else sys.stderr
    writer = logging.StreamHandler(stream)
    chosen = resolve_format(fmt, stream)
    writer.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    handler = _QueueHandler(queue.Queue(QUEUE_SIZE))
    handler.addFilter(RequestIdFilter())
    return LoggingHandle(handler, writer, logging.getLevelNamesMapping()[level.upper()])
