"""The file sink: one JSON line per inference (monitoring/records.py), appended in batches.

Writes happen in the sink's own thread (one per file, so batches land in order), each batch in
one ``write`` followed by a flush, so a reader (or a crash) never sees half a batch from a
running server. Once the file reaches ``rotate_mb`` it is renamed to
``<stem>-<UTC time><suffix>`` (e.g. ``iris-20261122T101112.123456Z.jsonl``) and a new one is
started; with ``keep: N`` only the N newest rotated files are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from modelserve.config.payload import FileSinkConfig
from modelserve.monitoring.events import InferenceEvent
from modelserve.monitoring.records import LogPolicy, record_bytes
from modelserve.monitoring.sinks.delivery import Pending
from modelserve.monitoring.sinks.registry import SinkContext

__all__ = ["FileSink"]

MIB = 1024 * 1024


class FileSink:
    def __init__(self, config: FileSinkConfig, context: SinkContext) -> None:
        self.path = context.file_path(config.path)
        self._rotate_bytes = int(config.rotate_mb * MIB)
        self._keep = config.keep
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="modelserve-payload-file")
        self._file: BinaryIO | None = None
        self._size = 0

    def encode(self, event: InferenceEvent, policy: LogPolicy) -> bytes:
        return record_bytes(event, policy) + b"\n"

    async def send(self, batch: list[Pending]) -> list[Pending]:
        data = b"".join(pending.payload for pending in batch)
        await asyncio.get_running_loop().run_in_executor(self._executor, self._write, data)
        return []

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._close)
        finally:
            self._executor.shutdown(wait=False)

    # ---- in the sink's thread ----------------------------------------------------------------

    def _open(self) -> BinaryIO:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab")  # noqa: SIM115 - kept open between batches
            self._size = self._file.tell()
        return self._file

    def _write(self, data: bytes) -> None:
        file = self._open()
        if self._rotate_bytes and self._size and self._size + len(data) > self._rotate_bytes:
            self._rotate()
            file = self._open()
        try:
            file.write(data)
            file.flush()
        except OSError:
            # Leave no partial batch behind: cut the file back to its last whole line.
            self._close_quietly()
            with contextlib.suppress(OSError):
                os.truncate(self.path, self._size)
            raise
        self._size += len(data)

    def _rotate(self) -> None:
        self._close()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        target = self.path.with_name(f"{self.path.stem}-{stamp}{self.path.suffix}")
        counter = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.stem}-{stamp}-{counter}{self.path.suffix}")
            counter += 1
        os.replace(self.path, target)
        if self._keep:
            for old in self._rotated()[: -self._keep]:
                with contextlib.suppress(OSError):
                    old.unlink()

    def _rotated(self) -> list[Path]:
        """Rotated files of this sink, oldest first (their names sort by time)."""
        pattern = f"{self.path.stem}-[0-9]*T[0-9]*Z*{self.path.suffix}"
        return sorted(self.path.parent.glob(pattern))

    def _close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.flush()
            os.fsync(file.fileno())
            file.close()

    def _close_quietly(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()
