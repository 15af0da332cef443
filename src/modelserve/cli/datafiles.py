"""The files the client commands read: predict's input, the labels file, the experiment.

predict's ``--input`` by its extension (``-`` is stdin, JSON when it starts with ``{`` or ``[``,
CSV otherwise):

- ``.json``: a list of rows (``[[5.1, 3.5, 1.4, 0.2], …]``), a list of records
  (``[{"sepal_length": 5.1, …}, …]``), a dict of input name to (nested) list, or a whole V2
  request (``{"inputs": [{"name", "datatype", "shape", "data"}, …]}``);
- ``.jsonl`` / ``.ndjson``: one record per line;
- ``.csv``: a header row, then one row per line (numbers where a column holds only numbers);
- ``.parquet``: columns as records (needs pyarrow: the ``parquet`` extra);
- ``.npy``: an array; ``.npz``: a dict of arrays (never pickles).

Every mistake is a ``CommandError`` naming the file.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["read_document", "read_input", "read_labels"]

JSON_LINES = (".jsonl", ".ndjson")


def _fail(where: str, message: str) -> Exception:
    from modelserve.cli.main import CommandError

    return CommandError(f"{where}: {message}")


def _text(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(path, f"cannot read it: {exc}") from None


def _json(where: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(where, f"not valid JSON: {exc}") from None


def _number_or_text(values: list[str]) -> list[Any]:
    """A CSV column: numbers when every value is one, else the text."""
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        return values
    if all(n.is_integer() for n in numbers) and not any(
        "." in v or "e" in v.lower() for v in values
    ):
        return [int(n) for n in numbers]
    return numbers


def _csv_records(where: str, text: str) -> list[dict[str, Any]]:
    reader = csv.reader(io.StringIO(text))
    rows = [row for row in reader if row]
    if len(rows) < 2:
        raise _fail(where, "a CSV file needs a header row and at least one row")
    header, body = rows[0], rows[1:]
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise _fail(where, f"line {number} has {len(row)} values, the header {len(header)}")
    columns = {name: _number_or_text([row[i] for row in body]) for i, name in enumerate(header)}
    return [{name: columns[name][i] for name in header} for i in range(len(body))]


def _v2_request(where: str, doc: dict[str, Any]) -> dict[str, Any]:
    from modelserve.codecs.tensors import check_shape
    from modelserve.codecs.v2_json import decode_json_data
    from modelserve.errors import ServerError

    arrays: dict[str, Any] = {}
    inputs = doc["inputs"]
    if not isinstance(inputs, list) or not inputs:
        raise _fail(where, "'inputs' must be a non-empty list")
    try:
        for item in inputs:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise _fail(where, "each input needs a 'name'")
            name = item["name"]
            shape = check_shape(name, item.get("shape"))
            arrays[name] = decode_json_data(
                name, str(item.get("datatype")), shape, item.get("data")
            )
    except ServerError as exc:
        raise _fail(where, exc.message) from None
    return arrays


def _from_json(where: str, doc: Any) -> Any:
    if isinstance(doc, dict):
        if "inputs" in doc:
            return _v2_request(where, doc)
        if not doc:
            raise _fail(where, "no inputs")
        return {str(name): np.asarray(value) for name, value in doc.items()}
    if isinstance(doc, list) and doc:
        return doc
    raise _fail(where, "expected a list of rows or records, or an object of inputs")


def read_input(path: str) -> Any:
    """predict's data, in a kind ``Client.predict`` takes (see the module doc)."""
    suffix = Path(path).suffix.lower() if path != "-" else ""
    if suffix == ".parquet":
        return _parquet(path)
    if suffix in (".npy", ".npz"):
        return _numpy(path)
    text = _text(path)
    where = "stdin" if path == "-" else path
    if suffix in JSON_LINES:
        records = [_json(where, line) for line in text.splitlines() if line.strip()]
        if not records or not all(isinstance(r, dict) for r in records):
            raise _fail(where, "expected one JSON object per line")
        return records
    if suffix == ".json" or (not suffix and text.lstrip()[:1] in ("{", "[")):
        return _from_json(where, _json(where, text))
    if suffix in (".csv", ".txt", ""):
        return _csv_records(where, text)
    raise _fail(path, f"unknown input format {suffix!r}; use .json, .jsonl, .csv, .parquet, .npy")


def _parquet(path: str) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise _fail(
            path, "reading Parquet needs pyarrow: pip install 'modelserve[parquet]'"
        ) from None
    try:
        records: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except Exception as exc:  # pyarrow's errors have no common base we can name
        raise _fail(path, f"not a Parquet file: {exc}") from None
    if not records:
        raise _fail(path, "no rows")
    return records


def _numpy(path: str) -> Any:
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except (OSError, ValueError) as exc:
        raise _fail(path, f"not a numpy file (pickled objects are refused): {exc}") from None
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        return {name: loaded[name] for name in loaded.files}


def read_labels(path: str) -> tuple[list[str], list[Any]]:
    """(ids, labels) from CSV with ``id`` and ``label`` columns, a JSON list of
    ``{"id", "label"}`` (or ``{"labels": [...]}``, the body of the labels endpoint), or JSON
    lines."""
    text = _text(path)
    where = "stdin" if path == "-" else path
    stripped = text.lstrip()
    if Path(path).suffix.lower() in JSON_LINES:
        records: Any = [_json(where, line) for line in text.splitlines() if line.strip()]
    elif stripped[:1] in ("{", "["):
        records = _json(where, text)
        if isinstance(records, dict):
            records = records.get("labels", [records])
    else:
        records = _csv_records(where, text)
    if not isinstance(records, list) or not records:
        raise _fail(where, "no labels")
    ids: list[str] = []
    labels: list[Any] = []
    for position, record in enumerate(records):
        if not isinstance(record, dict) or "id" not in record or "label" not in record:
            raise _fail(where, f"record {position + 1} needs an 'id' and a 'label'")
        ids.append(str(record["id"]))
        labels.append(record["label"])
    return ids, labels


def read_document(path: str, key: str | None = None) -> dict[str, Any]:
    """A YAML or JSON mapping; when it holds ``key`` (a whole model.yaml), that part."""
    import yaml

    text = _text(path)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _fail(path, f"not valid YAML or JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _fail(path, "expected a mapping")
    inner = doc.get(key) if key is not None else None
    return inner if isinstance(inner, dict) else doc
