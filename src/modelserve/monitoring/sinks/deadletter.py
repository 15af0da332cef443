"""Dead-letter files: where a sink writes the events it could not deliver after its retries (or
before the shutdown timeout ran out), one JSON line each, so that nothing accepted is lost:

    {"sink": "cloudevents:collector:8080/", "time": "...Z", "attempts": 6,
     "error": "ConnectError: ...", "event": {<the payload-log record of the event>}}

``event`` is exactly what the file sink writes, so the lines can be replayed. The file is
``<log_dir>/dead-letter/<sink name>.jsonl`` (characters other than letters, digits, '.', '_' and
'-' in the name become '_').
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

from modelserve.monitoring.records import rfc3339

__all__ = ["DeadLetter", "dead_letter_path"]

log = logging.getLogger("modelserve.monitoring.sinks")


def dead_letter_path(log_dir: Path, sink_name: str, tag: str = "") -> Path:
    """``tag``: a per-process mark (several worker processes must not share one file)."""
    safe = re.sub(r"[^A-Za-z0-9._\-]", "_", sink_name).lstrip(".") or "sink"
    return log_dir / "dead-letter" / f"{safe}{tag}.jsonl"


class DeadLetter:
    def __init__(self, path: Path, sink_name: str) -> None:
        self.path = path
        self._sink = sink_name
        self._lock = asyncio.Lock()

    def lines(self, records: Sequence[bytes], error: str, attempts: int) -> bytes:
        now = rfc3339(time.time_ns())
        out = []
        for record in records:
            entry = {
                "sink": self._sink,
                "time": now,
                "attempts": attempts,
                "error": error,
                "event": orjson.Fragment(record),
            }
            out.append(orjson.dumps(entry) + b"\n")
        return b"".join(out)

    async def write(self, records: Sequence[bytes], error: str, attempts: int) -> bool:
        """Append the records (in a thread); False (and an error logged) if that failed too."""
        if not records:
            return True
        data = self.lines(records, error, attempts)
        async with self._lock:
            return await asyncio.to_thread(self._append, data)

    def write_now(self, records: Sequence[bytes], error: str, attempts: int) -> bool:
        """The same, blocking (at shutdown, after the loop's tasks were cancelled)."""
        return self._append(self.lines(records, error, attempts)) if records else True

    def _append(self, data: bytes) -> bool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as file:
                file.write(data)
        except OSError as exc:
            log.error("cannot write the dead-letter file %s: %s", self.path, exc)
            return False
        return True
