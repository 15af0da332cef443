"""The output folder's record of a job: ``_manifest.json`` (the job, its fingerprint, and every
shard with its source range, status, rows, bad rows, and the part file's size and SHA-256).

The commit point of a shard is the rename of its part file (written after its error file), so
the folder itself is the truth: a resumed job takes a shard as done when the manifest says so
and the part file has the recorded size, or, when the job was killed between the rename and the
next manifest write, when the part file exists (its rows, size and checksum are read back).
Everything else runs again, and writes the same bytes.

A job resumes only into a folder whose fingerprint (inputs with sizes and modification times,
model files, column mapping, output format, shard size) is its own; ``--overwrite`` clears a
folder of a batch job's files (and nothing else) to start again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from modelserve.offline.batch.errors import BatchError
from modelserve.offline.batch.runner import ERRORS_DIR, ShardResult, errors_name
from modelserve.offline.batch.sources import Shard
from modelserve.offline.batch.writer import fsync_dir, is_temporary, write_atomic

__all__ = [
    "ERRORS_FILE",
    "LOCK_FILE",
    "MANIFEST",
    "SUCCESS",
    "Manifest",
    "ShardEntry",
    "fingerprint",
    "lock_output",
    "prepare_output",
]

MANIFEST = "_manifest.json"
SUCCESS = "_SUCCESS"
ERRORS_FILE = "_errors.jsonl"
LOCK_FILE = ".modelserve-batch.lock"
VERSION = 1
_PART = re.compile(r"^part-\d{5,}\.(parquet|csv|jsonl)$")


def fingerprint(job: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()


@dataclass(slots=True)
class ShardEntry:
    shard: Shard
    part: str
    status: str = "pending"
    """pending | done | failed"""
    rows: int = 0
    errors: int = 0
    sha256: str = ""
    bytes: int = 0
    reason: str = ""

    def record(self, result: ShardResult) -> None:
        if result.failed:
            self.status, self.reason = "failed", result.failed
            self.errors = result.errors  # a shard stopped over the error budget wrote them
            return
        self.status, self.reason = "done", ""
        self.rows, self.errors = result.rows, result.errors
        self.sha256, self.bytes = result.sha256, result.bytes

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"part": self.part, "status": self.status}
        document["input"] = {
            k: v for k, v in asdict(self.shard).items() if k not in ("index", "rows")
        }
        document["rows_in"] = self.shard.rows
        if self.status == "done":
            document.update(rows=self.rows, errors=self.errors, bytes=self.bytes)
            document["sha256"] = self.sha256
        elif self.errors:
            document["errors"] = self.errors
        if self.reason:
            document["reason"] = self.reason
        return document

    @classmethod
    def from_json(cls, index: int, document: dict[str, Any]) -> ShardEntry:
        shard = Shard(index=index, rows=document["rows_in"], **document["input"])
        entry = cls(shard, document["part"], document["status"])
        entry.rows = document.get("rows", 0)
        entry.errors = document.get("errors", 0)
        entry.sha256 = document.get("sha256", "")
        entry.bytes = document.get("bytes", 0)
        entry.reason = document.get("reason", "")
        return entry


@dataclass(slots=True)
class Manifest:
    job: dict[str, Any]
    shards: list[ShardEntry] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.job)

    def to_bytes(self) -> bytes:
        done = [e for e in self.shards if e.status == "done"]
        document = {
            "manifest": VERSION,
            "fingerprint": self.fingerprint,
            "job": self.job,
            "rows": sum(e.rows for e in done),
            "errors": sum(e.errors for e in done),
            "shards_done": len(done),
            "shards": [e.to_json() for e in self.shards],
        }
        return json.dumps(document, indent=1).encode() + b"\n"

    def save(self, directory: Path) -> None:
        write_atomic(directory, MANIFEST, self.to_bytes())
        fsync_dir(directory)

    @classmethod
    def load(cls, directory: Path) -> Manifest | None:
        path = directory / MANIFEST
        if not path.exists():
            return None
        try:
            document = json.loads(path.read_text())
            if document.get("manifest") != VERSION:
                raise ValueError(f"manifest version {document.get('manifest')}")
            shards = [ShardEntry.from_json(i, d) for i, d in enumerate(document["shards"])]
            return cls(document["job"], shards)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BatchError(
                f"{path} cannot be read ({exc}); use --overwrite to start again"
            ) from None

    def reconcile(self, directory: Path) -> None:
        """Trust the folder: done shards whose part is gone run again; parts written after the
        last manifest write count as done."""
        for entry in self.shards:
            path = directory / entry.part
            if entry.status == "done":
                if not path.is_file() or path.stat().st_size != entry.bytes:
                    entry.status = "pending"
            elif path.is_file():
                _adopt(entry, path, directory)


def _adopt(entry: ShardEntry, path: Path, directory: Path) -> None:
    data = path.read_bytes()
    entry.status, entry.reason = "done", ""
    entry.sha256, entry.bytes = hashlib.sha256(data).hexdigest(), len(data)
    entry.rows = _rows_of(path, data)
    errors = directory / ERRORS_DIR / errors_name(entry.shard.index)
    entry.errors = errors.read_bytes().count(b"\n") if errors.is_file() else 0


def _rows_of(path: Path, data: bytes) -> int:
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(pa.BufferReader(data)).metadata.num_rows)
    if path.suffix == ".csv":
        import pyarrow as pa
        import pyarrow.csv as pacsv

        return int(pacsv.read_csv(pa.BufferReader(data)).num_rows)
    return data.count(b"\n")


# ---- the folder -------------------------------------------------------------------------------


def lock_output(directory: Path) -> IO[bytes]:
    """Create the folder if needed and hold it for this job; a second job on it is refused at
    once. The lock goes with the returned handle."""
    if directory.exists() and not directory.is_dir():
        raise BatchError(f"--output {directory} is a file, not a folder")
    if directory.is_dir():
        _refuse_foreign(directory)
    directory.mkdir(parents=True, exist_ok=True)
    handle = open(directory / LOCK_FILE, "ab")  # noqa: SIM115 - held for the job's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise BatchError(f"another batch job is writing to {directory}") from None
    return handle


def ours(name: str) -> bool:
    return (
        bool(_PART.match(name))
        or name in (MANIFEST, SUCCESS, ERRORS_FILE, ERRORS_DIR, LOCK_FILE)
        or is_temporary(name)
    )


def prepare_output(directory: Path, job: dict[str, Any], overwrite: bool) -> Manifest | None:
    """Make the (locked) folder ready; returns the manifest to resume from, if any. Leftover
    temporary files of an interrupted run are removed."""
    for item in directory.iterdir():
        if is_temporary(item.name):
            item.unlink(missing_ok=True)
    _refuse_foreign(directory)
    manifest = Manifest.load(directory) if not overwrite else None
    if manifest is not None and manifest.fingerprint != fingerprint(job):
        keys = job.keys() | manifest.job.keys()
        changed = sorted(k for k in keys if job.get(k) != manifest.job.get(k))
        raise BatchError(
            f"--output {directory} holds the output of another job (it differs in: "
            f"{', '.join(changed)}); use --overwrite to replace it, or another folder"
        )
    if manifest is None:
        _clear(directory)
    return manifest


def _refuse_foreign(directory: Path) -> None:
    foreign = sorted(p.name for p in directory.iterdir() if not ours(p.name))
    if foreign:
        raise BatchError(
            f"--output {directory} holds files that are not a batch job's output "
            f"({', '.join(foreign[:3])}); choose an empty or new folder"
        )


def _clear(directory: Path) -> None:
    for item in directory.iterdir():
        if item.name == LOCK_FILE or not ours(item.name):
            continue
        if item.is_dir():
            shutil.rmtree(item)
        else:
            item.unlink()
