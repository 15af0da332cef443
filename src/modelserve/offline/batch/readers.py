"""One shard's rows as an Arrow table of the columns a job needs, one row per input record.

Parquet is read by row groups. CSV and JSONL are parsed by pyarrow with the column types the
job fixed at planning (so every shard of every file reads alike). When pyarrow refuses a shard
as a whole (a value that does not parse, a CSV record with a missing field, a line that is not
JSON), the shard is read again record by record: the bad records become bad rows with a reason,
and every good one keeps its place.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from modelserve.offline.batch.columns import ColumnPlan
from modelserve.offline.batch.errors import BatchError
from modelserve.offline.batch.sources import InputFile, Shard, open_text

__all__ = ["file_columns", "read_sample", "read_shard"]

SAMPLE_BYTES = 1 << 20
JSON_BLOCK = 4 << 20


def _arrow_errors() -> tuple[type[Exception], ...]:
    import pyarrow as pa

    return (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)


# ---- planning helpers -------------------------------------------------------------------------


def read_sample(file: InputFile) -> Any:
    """The first rows of a file with the types pyarrow infers for them (records that do not
    parse are left out: they become bad rows when the shard runs)."""
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    try:
        if file.format == "parquet":
            parquet = pq.ParquetFile(file.path)
            first = next(parquet.iter_batches(batch_size=1000), None)
            return first if first is not None else parquet.schema_arrow.empty_table()
        with open_text(file.path, file.compression) as stream:
            if file.format == "csv":
                reader = pacsv.open_csv(
                    stream,
                    read_options=pacsv.ReadOptions(block_size=SAMPLE_BYTES),
                    parse_options=pacsv.ParseOptions(invalid_row_handler=lambda row: "skip"),
                )
            else:
                try:
                    reader = pajson.open_json(
                        stream, read_options=pajson.ReadOptions(block_size=SAMPLE_BYTES)
                    )
                except _arrow_errors():
                    return _json_sample(file)
            try:
                return reader.read_next_batch()
            except StopIteration:
                return reader.schema.empty_table()
    except _arrow_errors() as exc:
        raise BatchError(f"cannot read the first rows of {file.path}: {_first_line(exc)}") from None
    except OSError as exc:
        raise BatchError(f"cannot read {file.path}: {exc}") from None


def _json_sample(file: InputFile) -> Any:
    """The first JSON objects of a file that pyarrow refuses as a whole; a key whose values
    disagree on their type is typed as text."""
    import pyarrow as pa

    records: list[dict[str, Any]] = []
    with open_text(file.path, file.compression) as stream:
        for line in bytes(stream.read(SAMPLE_BYTES)).split(b"\n")[:-1]:
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
    keys = list(dict.fromkeys(key for record in records for key in record))
    columns = []
    for key in keys:
        values = [record.get(key) for record in records]
        try:
            columns.append(pa.array(values))
        except (TypeError, ValueError, OverflowError, NotImplementedError):  # pyarrow's too
            columns.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
    return pa.Table.from_arrays(columns, names=keys)


def file_columns(file: InputFile) -> list[str]:
    """The column names of a file (JSONL: the keys of its first rows)."""
    if file.format == "parquet":
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(file.path).schema_arrow.names)
    return list(read_sample(file).schema.names)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().split("\n", 1)[0]


# ---- shards -----------------------------------------------------------------------------------


def read_shard(shard: Shard, plan: ColumnPlan) -> tuple[Any, dict[int, str]]:
    """The shard's rows (the plan's columns, inputs first) and its bad records by row."""
    names = plan.read_columns()
    types = plan.read_types()
    try:
        if shard.format == "parquet":
            kept = dict(zip(plan.keep, plan.keep_types, strict=True))
            return _parquet(shard, names, kept), {}
        data = _text(shard)
        if shard.format == "csv":
            try:
                return _csv_fast(data, names, types), {}
            except _arrow_errors():
                return _csv_slow(data, names, types)
        try:
            return _json_fast(data, names, types), {}
        except _arrow_errors():
            return _json_slow(data, names, types)
    except OSError as exc:
        raise BatchError(f"cannot read {shard.source}: {exc}") from None


def _parquet(shard: Shard, names: Sequence[str], kept: Mapping[str, Any]) -> Any:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(shard.source)
    metadata = parquet.metadata
    groups, first, row = [], -1, 0
    for group in range(metadata.num_row_groups):
        size = metadata.row_group(group).num_rows
        if row + size > shard.start and row < shard.stop:
            groups.append(group)
            first = row if first < 0 else first
        row += size
    missing = [n for n in names if n not in parquet.schema_arrow.names]
    if missing:
        raise BatchError(f"{shard.source} has no column {missing[0]!r}")
    table = parquet.read_row_groups(groups, columns=list(names))
    table = table.slice(shard.start - first, shard.stop - shard.start)
    return _conform(table, names, kept)


def _conform(table: Any, names: Sequence[str], kept: Mapping[str, Any]) -> Any:
    """Kept columns take the job's types (the first file's), so that every part file has the
    same schema; input columns are converted later, row by row where needed."""
    import pyarrow as pa

    columns = []
    for name in names:
        column = table.column(name)
        want = kept.get(name)
        if want is not None and not column.type.equals(want):
            try:
                column = column.cast(want)
            except _arrow_errors() as exc:
                raise BatchError(
                    f"column '{name}' is {column.type} here but {want} in the first file: "
                    f"{_first_line(exc)}"
                ) from None
        columns.append(column)
    return pa.Table.from_arrays(columns, names=list(names))


def _text(shard: Shard) -> bytes:
    """The shard's bytes: the CSV header, then its records (a compressed file: all of it)."""
    with open_text(shard.source, shard.compression) as stream:
        if shard.compression is not None:
            return bytes(stream.read())
        header = bytes(stream.read(shard.header_end)) if shard.header_end else b""
        stream.seek(shard.start)
        return header + bytes(stream.read(shard.stop - shard.start))


def _csv_fast(data: bytes, names: Sequence[str], types: Mapping[str, Any]) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(
        pa.BufferReader(data),
        parse_options=pacsv.ParseOptions(newlines_in_values=b'"' in data),
        convert_options=pacsv.ConvertOptions(
            include_columns=list(names),
            column_types={n: types[n] for n in names if n in types},
        ),
    )
    return table.select(list(names))


def _json_fast(data: bytes, names: Sequence[str], types: Mapping[str, Any]) -> Any:
    import pyarrow as pa
    import pyarrow.json as pajson

    schema = pa.schema([(n, types[n]) for n in names])
    table = pajson.read_json(
        pa.BufferReader(data),
        read_options=pajson.ReadOptions(block_size=max(JSON_BLOCK, len(data) // 8 + 1)),
        parse_options=pajson.ParseOptions(
            explicit_schema=schema, unexpected_field_behavior="ignore"
        ),
    )
    return table.select(list(names))


def _csv_slow(
    data: bytes, names: Sequence[str], types: Mapping[str, Any]
) -> tuple[Any, dict[int, str]]:
    import pyarrow.csv as pacsv

    nulls = set(pacsv.ConvertOptions().null_values)
    records = csv.reader(io.StringIO(data.decode("utf-8", errors="replace"), newline=""))
    header = next(records, [])
    missing = [n for n in names if n not in header]
    if missing:
        raise BatchError(f"no column {missing[0]!r} in the CSV header {header}")
    where = [header.index(n) for n in names]
    values: list[list[Any]] = [[] for _ in names]
    errors: dict[int, str] = {}
    row = 0
    for record in records:
        if not any(field.strip() for field in record):
            continue  # a blank line is not a record
        if len(record) != len(header):
            errors[row] = f"the record has {len(record)} fields, the header {len(header)}"
        for column, index in zip(values, where, strict=True):
            ok = len(record) == len(header)
            field = record[index] if ok else None
            column.append(None if field is None or field in nulls else field)
        row += 1
    return _typed_table(names, values, types, errors, from_text=True), errors


def _json_slow(
    data: bytes, names: Sequence[str], types: Mapping[str, Any]
) -> tuple[Any, dict[int, str]]:
    values: list[list[Any]] = [[] for _ in names]
    errors: dict[int, str] = {}
    row = 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        record: Any = None
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            errors[row] = f"the line is not valid JSON: {exc}"
        if record is not None and not isinstance(record, dict):
            errors.setdefault(row, "the line is not a JSON object")
            record = None
        for column, name in zip(values, names, strict=True):
            column.append(record.get(name) if record is not None else None)
        row += 1
    return _typed_table(names, values, types, errors, from_text=False), errors


def _typed_table(
    names: Sequence[str],
    values: list[list[Any]],
    types: Mapping[str, Any],
    errors: dict[int, str],
    from_text: bool,
) -> Any:
    """Columns of the job's types; a value that does not fit makes its row bad (and null)."""
    import pyarrow as pa

    columns = []
    for name, column in zip(names, values, strict=True):
        want = types[name]
        try:
            columns.append(_typed(column, want, from_text))
            continue
        except _arrow_errors():
            pass
        fixed = []
        for row, value in enumerate(column):
            try:
                fixed.append(_typed([value], want, from_text)[0].as_py())
            except _arrow_errors() as exc:
                errors.setdefault(
                    row, f"column '{name}': {value!r} cannot be read as {want} ({_first_line(exc)})"
                )
                fixed.append(None)
        columns.append(pa.array(fixed, want))
    return pa.Table.from_arrays(columns, names=list(names))


def _typed(values: list[Any], want: Any, from_text: bool) -> Any:
    import pyarrow as pa

    if from_text and not pa.types.is_string(want):
        return pa.array(values, pa.string()).cast(want)
    return pa.array(values, want)
