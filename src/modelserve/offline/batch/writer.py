"""Part files and error files, written atomically: the bytes go to a hidden temporary file in
the output folder, are flushed to disk, and the file is renamed into place. A reader (or a
resumed job) sees a whole part file or none. The SHA-256 of the bytes is the part's checksum.

Formats: Parquet (snappy; dictionary encoding for text columns only), CSV (a header in every
part), JSONL (one object per line). Floats are written in their shortest round-trip form (FP32
``0.1`` stays ``0.1``); JSON has no NaN or infinity, so those are ``null`` in JSONL; a binary
column that is not all UTF-8 is base64 in CSV and JSONL.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = [
    "EXTENSIONS",
    "Written",
    "encode_table",
    "fsync_dir",
    "part_name",
    "write_atomic",
    "write_jsonl",
]

EXTENSIONS = {"parquet": "parquet", "csv": "csv", "jsonl": "jsonl"}
TEMP_PREFIX = "."
TEMP_MARK = ".tmp-"


@dataclass(frozen=True, slots=True)
class Written:
    name: str
    sha256: str
    bytes: int


def part_name(index: int, fmt: str) -> str:
    return f"part-{index:05d}.{EXTENSIONS[fmt]}"


def is_temporary(name: str) -> bool:
    """A file left by an interrupted write (removed when a job starts)."""
    return name.startswith(TEMP_PREFIX) and TEMP_MARK in name


def write_atomic(directory: Path, name: str, data: bytes | memoryview) -> Written:
    temp = directory / f"{TEMP_PREFIX}{name}{TEMP_MARK}{os.getpid()}-{threading.get_ident()}"
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, directory / name)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return Written(name, hashlib.sha256(data).hexdigest(), len(data))


def fsync_dir(directory: Path) -> None:
    """Make the renames in ``directory`` durable (where the filesystem allows it)."""
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def write_jsonl(directory: Path, name: str, records: Iterable[dict[str, Any]]) -> Written:
    data = b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records)
    return write_atomic(directory, name, data)


# ---- tables -----------------------------------------------------------------------------------


def encode_table(table: Any, fmt: str) -> memoryview:
    """The bytes of a part file holding ``table``."""
    import pyarrow as pa

    if fmt == "parquet":
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        # Dictionary encoding only where values repeat (text): on floats it costs ~10x the
        # time and makes the file larger.
        text = [
            f.name
            for f in table.schema
            if pa.types.is_string(f.type)
            or pa.types.is_large_string(f.type)
            or pa.types.is_binary(f.type)
        ]
        pq.write_table(table, sink, compression="snappy", use_dictionary=text)
        return memoryview(sink.getvalue())
    if fmt == "csv":
        import pyarrow.csv as pacsv

        sink = pa.BufferOutputStream()
        pacsv.write_csv(_text_safe(table), sink)
        return memoryview(sink.getvalue())
    return memoryview(_jsonl(table))


def _text_safe(table: Any) -> Any:
    """Binary columns as UTF-8 text where they are, else base64 (CSV holds only text)."""
    import pyarrow as pa

    for index, field in enumerate(table.schema):
        if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            table = table.set_column(index, field.name, _binary_text(table.column(index)))
    return table


def _binary_text(column: Any) -> Any:
    import pyarrow as pa

    try:
        return column.cast(pa.string())
    except pa.ArrowInvalid:
        values = column.to_pylist()
        return pa.array(
            [None if v is None else base64.b64encode(v).decode("ascii") for v in values],
            pa.string(),
        )


def _jsonl(table: Any) -> bytes:
    """One JSON object per row, built column-wise: numbers and booleans through Arrow's own
    formatting, strings and everything else through orjson."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return b""
    parts: list[Any] = []
    for index, field in enumerate(table.schema):
        key = orjson.dumps(field.name).decode()
        parts.append(("{" if index == 0 else ",") + key + ":")
        parts.append(_json_values(table.column(index).combine_chunks(), pa, pc))
    parts.append("}")
    lines = pc.binary_join_element_wise(*parts, "")
    return ("\n".join(lines.to_pylist()) + "\n").encode("utf-8")


def _json_values(column: Any, pa: Any, pc: Any) -> Any:
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        text = column.cast(pa.string())
    elif pa.types.is_floating(kind):
        finite = pc.fill_null(pc.is_finite(column), False)
        text = pc.if_else(finite, column.cast(pa.string()), pa.scalar(None, pa.string()))
    elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        strings = _binary_text(column).to_pylist()
        text = pa.array([None if v is None else orjson.dumps(v).decode() for v in strings])
    else:
        values = column.to_pylist()
        text = pa.array(
            [None if v is None else orjson.dumps(v, default=str).decode() for v in values],
            pa.string(),
        )
    return pc.fill_null(text, "null")
