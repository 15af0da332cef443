"""Where a job's rows come from: input paths (files, globs, folders) resolved into files of a
known format, and the plan that cuts them into shards of about ``shard_rows`` rows.

Rows keep the input order: files in the order given (a glob or a folder in sorted path order),
rows in file order. A shard never spans two files.

- Parquet: shards are whole row groups, grouped up to ``shard_rows``; a row group larger than
  that is cut into equal row ranges. Planning reads only the footers.
- CSV and JSONL: shards are byte ranges that end on a record boundary. Planning reads each file
  once (numpy over 16 MiB blocks) to count the records and find the boundaries; in CSV a
  newline inside a quoted value does not end a record (RFC 4180 quote parity). Blank lines are
  not records. A compressed file (``.gz``, ``.bz2``, ``.zst``) cannot be cut: it is one shard.
"""

from __future__ import annotations

import glob
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from modelserve.offline.batch.errors import BatchError

__all__ = [
    "FORMATS",
    "InputFile",
    "Shard",
    "open_text",
    "plan_shards",
    "resolve_inputs",
]

FORMATS = ("parquet", "csv", "jsonl")
SUFFIXES = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}
BLOCK = 16 * 1024 * 1024
NEWLINE, CR, QUOTE = 10, 13, 34


@dataclass(frozen=True, slots=True)
class InputFile:
    path: str
    format: str
    compression: str | None
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Shard:
    """A contiguous run of one file's rows. ``start``/``stop``: rows of the file (Parquet) or
    bytes (CSV, JSONL; ``header_end`` is where a CSV header stops)."""

    index: int
    source: str
    format: str
    compression: str | None
    start: int
    stop: int
    rows: int
    first_record: int
    """The shard's first row within its file (0-based, the CSV header not counted)."""
    first_row: int
    """The shard's first row over all inputs: rows are numbered in input order."""
    header_end: int = 0


def _format_of(path: Path) -> tuple[str, str | None] | None:
    suffixes = [s.lower() for s in path.suffixes]
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression is not None:
        suffixes = suffixes[:-1]
    fmt = SUFFIXES.get(suffixes[-1]) if suffixes else None
    if fmt is None or (fmt == "parquet" and compression is not None):
        return None
    return fmt, compression


def _hidden(path: Path, root: Path) -> bool:
    """Names starting with '.' or '_' (_SUCCESS, .crc, our own _manifest.json) are not data."""
    return any(part.startswith((".", "_")) for part in path.relative_to(root).parts)


def _expand(pattern: str) -> list[Path]:
    if glob.has_magic(pattern):
        found = [Path(p) for p in sorted(glob.glob(pattern, recursive=True))]
        files = [p for p in found if p.is_file() and not p.name.startswith((".", "_"))]
        if not files:
            raise BatchError(f"input '{pattern}' matches no file")
        return files
    path = Path(pattern)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p, path))
        if not files:
            raise BatchError(f"input folder {path} holds no data file")
        return files
    if path.is_file():
        return [path]
    raise BatchError(f"input {pattern} does not exist")


def resolve_inputs(patterns: Sequence[str]) -> list[InputFile]:
    """The files the patterns name, in order, each once, each of a known format."""
    if not patterns:
        raise BatchError("give at least one --input")
    seen: set[str] = set()
    files: list[InputFile] = []
    for pattern in patterns:
        for path in _expand(pattern):
            resolved = str(path.resolve())
            if resolved in seen:
                continue
            seen.add(resolved)
            kind = _format_of(path)
            if kind is None:
                raise BatchError(
                    f"{path}: cannot tell its format from the name; input files end with "
                    ".parquet, .csv or .jsonl (CSV and JSONL may add .gz, .bz2 or .zst)"
                )
            stat = path.stat()
            files.append(InputFile(resolved, kind[0], kind[1], stat.st_size, stat.st_mtime_ns))
    return files


# ---- planning ---------------------------------------------------------------------------------


def plan_shards(files: Sequence[InputFile], shard_rows: int) -> list[Shard]:
    """Every file cut into shards of about ``shard_rows`` rows, numbered in input order."""
    if shard_rows < 1:
        raise BatchError("--shard-rows must be at least 1")
    shards: list[Shard] = []
    first_row = 0
    for file in files:
        try:
            pieces = (
                _parquet_pieces(file, shard_rows)
                if file.format == "parquet"
                else _text_pieces(file, shard_rows)
            )
        except OSError as exc:
            raise BatchError(f"cannot read {file.path}: {exc}") from None
        for start, stop, rows, first_record, header_end in pieces:
            shards.append(
                Shard(
                    len(shards),
                    file.path,
                    file.format,
                    file.compression,
                    start,
                    stop,
                    rows,
                    first_record,
                    first_row,
                    header_end,
                )
            )
            first_row += rows
    return shards


Piece = tuple[int, int, int, int, int]
"""start, stop, rows, first_record, header_end"""


def _parquet_pieces(file: InputFile, shard_rows: int) -> list[Piece]:
    import pyarrow.parquet as pq

    try:
        metadata = pq.ParquetFile(file.path).metadata
    except Exception as exc:  # pyarrow raises ArrowInvalid and friends
        raise BatchError(f"{file.path} is not a readable Parquet file: {exc}") from None
    pieces: list[Piece] = []
    begin = row = 0
    for group in range(metadata.num_row_groups):
        size = metadata.row_group(group).num_rows
        if row > begin and row - begin + size > shard_rows:
            pieces.append((begin, row, row - begin, begin, 0))
            begin = row
        if size > shard_rows:  # cut a large row group into equal parts
            parts = -(-size // shard_rows)
            edges = [row + size * i // parts for i in range(parts + 1)]
            pieces += [(a, b, b - a, a, 0) for a, b in itertools.pairwise(edges)]
            begin = row + size
        row += size
    if row > begin:
        pieces.append((begin, row, row - begin, begin, 0))
    return pieces


def open_text(file_path: str, compression: str | None) -> Any:
    """A binary stream of the file's text, decompressed when needed."""
    import pyarrow as pa

    raw = pa.OSFile(file_path, "rb")
    return pa.CompressedInputStream(raw, compression) if compression else raw


def _blocks(file: InputFile) -> Iterator[bytes]:
    with open_text(file.path, file.compression) as stream:
        while True:
            block = stream.read(BLOCK)
            if not block:
                return
            yield bytes(block)


def _text_pieces(file: InputFile, shard_rows: int) -> list[Piece]:
    header = file.format == "csv"
    ends = _RecordEnds(csv=header, skip=1 if header else 0, every=shard_rows)
    for block in _blocks(file):
        ends.feed(block)
    ends.finish()
    if header and ends.count == 0:
        raise BatchError(f"{file.path} is empty: a CSV file starts with a header line")
    header_end = ends.first_end if header else 0
    total = ends.count - (1 if header else 0)
    if total == 0:
        return []
    if file.compression is not None:  # a compressed stream cannot be cut
        return [(0, file.size, total, 0, header_end)]
    pieces: list[Piece] = []
    begin, first = header_end, 0
    for count, end in ends.boundaries:
        if count < total:
            pieces.append((begin, end, count - first, first, header_end))
            begin, first = end, count
    pieces.append((begin, ends.stop, total - first, first, header_end))
    return pieces


class _RecordEnds:
    """Counts a text file's records block by block, and notes where every ``every``-th record
    (after the first ``skip``, a CSV header) ends: (records so far, end offset)."""

    def __init__(self, csv: bool, skip: int, every: int) -> None:
        self.csv = csv
        self.skip = skip
        self.every = every
        self.count = 0
        self.first_end = 0
        self.stop = 0
        self.boundaries: list[tuple[int, int]] = []
        self._offset = 0
        self._in_quote = False
        self._content = False
        """Whether the current line holds anything but whitespace so far."""

    def feed(self, block: bytes) -> None:
        data: npt.NDArray[np.uint8] = np.frombuffer(block, np.uint8)
        newlines = np.flatnonzero(data == NEWLINE)
        if self.csv:
            quotes = data == QUOTE
            if quotes.any():
                inside = (np.cumsum(quotes)[newlines] + self._in_quote) % 2 == 1
                newlines = newlines[~inside]
                self._in_quote = bool((int(quotes.sum()) + self._in_quote) % 2)
        solid = ~_WHITESPACE[data]
        if newlines.size:
            solid_before = np.concatenate(([0], np.cumsum(solid, dtype=np.int64)))
            starts = np.empty_like(newlines)
            starts[0] = 0
            starts[1:] = newlines[:-1] + 1
            blank = solid_before[newlines] == solid_before[starts]
            blank[0] = blank[0] and not self._content
            self._note(newlines[~blank] + 1 + self._offset)
            self._content = bool(solid[int(newlines[-1]) + 1 :].any())
        else:
            self._content = self._content or bool(solid.any())
        self._offset += len(block)

    def finish(self) -> None:
        if self._content:  # a last record without a final newline
            self._note(np.array([self._offset], dtype=np.intp))
        self.stop = self._offset

    def _note(self, ends: npt.NDArray[np.intp]) -> None:
        if not ends.size:
            return
        if self.count == 0:
            self.first_end = int(ends[0])
        data_count = self.count - self.skip + 1 + np.arange(ends.size)
        marks = (data_count > 0) & (data_count % self.every == 0)
        self.boundaries.extend(zip(data_count[marks].tolist(), ends[marks].tolist(), strict=True))
        self.count += int(ends.size)


_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[[9, 10, 11, 12, 13, 32]] = True
