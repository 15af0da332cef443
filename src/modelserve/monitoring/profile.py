"""Reference profiles: what input drift is measured against, built once from training rows and
cached as ``reference_profile.json`` beside them.

A profile has, per feature (column): its type (``numeric`` or ``categorical``), the share of
missing values (``null_rate``), and for numbers ``min``, ``max``, ``mean``, ``std``, the
decile edges (``quantiles``: PSI's bins) and the reference values themselves (all of them up to
``MAX_VALUES`` rows, else ``MAX_VALUES`` evenly spaced quantiles, enough for the KS and
Wasserstein tests), for categories their ``frequencies``. It also keeps the reference's
``rows`` and the ``source`` it came from (name, size, modification time: a changed file is
profiled again).

Reference files: CSV (a header row; a column whose every value parses as a number is
numeric), Parquet (needs pyarrow: ``modelserve[parquet]``), NPZ (its first array, 2-D, or one
array per column) and JSONL (one object per row, or one list per row). Text values are
categorical.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

__all__ = [
    "MAX_VALUES",
    "PROFILE_FILE",
    "FeatureProfile",
    "Profile",
    "build_profile",
    "load_or_build",
    "read_columns",
]

PROFILE_FILE = "reference_profile.json"
MAX_VALUES = 1000
PSI_BINS = 10
FORMAT = 1


@dataclass(frozen=True, slots=True)
class FeatureProfile:
    name: str
    kind: str
    """``numeric`` or ``categorical``."""
    null_rate: float
    values: np.ndarray
    """numeric: the sorted reference values (or quantiles of them), NaN left out."""
    quantiles: tuple[float, ...] = ()
    frequencies: dict[str, float] | None = None
    minimum: float | None = None
    maximum: float | None = None
    mean: float | None = None
    std: float | None = None

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"type": self.kind, "null_rate": self.null_rate}
        if self.kind == "numeric":
            doc.update(
                min=self.minimum,
                max=self.maximum,
                mean=self.mean,
                std=self.std,
                quantiles=list(self.quantiles),
                values=self.values.tolist(),
            )
        else:
            doc["frequencies"] = self.frequencies
        return doc

    @classmethod
    def from_document(cls, name: str, doc: dict[str, Any]) -> FeatureProfile:
        if doc["type"] == "numeric":
            return cls(
                name,
                "numeric",
                float(doc["null_rate"]),
                np.asarray(doc["values"], dtype=np.float64),
                tuple(float(q) for q in doc["quantiles"]),
                None,
                doc["min"],
                doc["max"],
                doc["mean"],
                doc["std"],
            )
        return cls(
            name,
            "categorical",
            float(doc["null_rate"]),
            np.empty(0),
            frequencies={str(k): float(v) for k, v in doc["frequencies"].items()},
        )


@dataclass(frozen=True, slots=True)
class Profile:
    rows: int
    features: tuple[FeatureProfile, ...]
    source: dict[str, Any]

    def document(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "rows": self.rows,
            "source": self.source,
            "features": {f.name: f.document() for f in self.features},
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Profile:
        if doc.get("format") != FORMAT:
            raise ValueError("not a reference profile of this version of modelserve")
        features = tuple(FeatureProfile.from_document(n, f) for n, f in doc["features"].items())
        return cls(int(doc["rows"]), features, dict(doc.get("source") or {}))

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(orjson.dumps(self.document(), option=orjson.OPT_SERIALIZE_NUMPY))
        os.replace(tmp, path)


# ---- reading reference files -------------------------------------------------------------------


def read_columns(path: Path) -> dict[str, list[Any]]:
    """The columns of a reference file, by name (positional files: ``0``, ``1``, …)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path)
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".npz":
        return _read_npz(path)
    if suffix in (".parquet", ".pq"):
        return _read_parquet(path)
    raise ValueError(f"{path.name}: a reference must be .csv, .parquet, .npz or .jsonl")


def _read_csv(path: Path) -> dict[str, list[Any]]:
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path.name} is empty")
        columns: list[list[Any]] = [[] for _ in header]
        for line, row in enumerate(reader, start=2):
            if len(row) != len(header):
                raise ValueError(f"{path.name} line {line}: {len(row)} values, {len(header)} named")
            for column, value in zip(columns, row, strict=True):
                column.append(value)
    return {name: _typed(values) for name, values in zip(header, columns, strict=True)}


def _typed(values: list[str]) -> list[Any]:
    """Numbers when every non-empty value is one, else text (empty: missing)."""
    try:
        return [float(v) if v.strip() else None for v in values]
    except ValueError:
        return [v if v != "" else None for v in values]


def _read_jsonl(path: Path) -> dict[str, list[Any]]:
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{path.name} is empty")
    if all(isinstance(r, list) for r in rows):
        width = len(rows[0])
        return {str(j): [r[j] if j < len(r) else None for r in rows] for j in range(width)}
    if not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{path.name}: every line must be an object (or every line a list)")
    names = list(dict.fromkeys(k for r in rows for k in r))
    return {name: [r.get(name) for r in rows] for name in names}


def _read_npz(path: Path) -> dict[str, list[Any]]:
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    if not arrays:
        raise ValueError(f"{path.name} holds no array")
    first = next(iter(arrays.values()))
    if first.ndim == 2:
        return {str(j): first[:, j].tolist() for j in range(first.shape[1])}
    return {name: array.reshape(len(array), -1)[:, 0].tolist() for name, array in arrays.items()}


def _read_parquet(path: Path) -> dict[str, list[Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(
            "a Parquet reference needs pyarrow: pip install 'modelserve[parquet]'"
        ) from None
    table = pq.read_table(path)
    return {name: table.column(name).to_pylist() for name in table.column_names}


# ---- profiling --------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def profile_feature(name: str, values: Sequence[Any]) -> FeatureProfile:
    """The profile of one column (numbers -> numeric, anything else -> categorical)."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    null_rate = 1 - len(present) / len(values) if values else 0.0
    if present and all(_is_number(v) for v in present):
        array = np.sort(np.asarray(present, dtype=np.float64))
        kept = array
        if len(array) > MAX_VALUES:
            kept = np.quantile(array, np.linspace(0, 1, MAX_VALUES))
        edges = np.quantile(array, np.linspace(0, 1, PSI_BINS + 1))[1:-1]
        return FeatureProfile(
            name,
            "numeric",
            null_rate,
            kept,
            tuple(float(e) for e in edges),
            None,
            float(array[0]),
            float(array[-1]),
            float(array.mean()),
            float(array.std()),
        )
    counts: dict[str, int] = {}
    for value in present:
        key = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        counts[key] = counts.get(key, 0) + 1
    total = sum(counts.values()) or 1
    return FeatureProfile(
        name, "categorical", null_rate, np.empty(0), (), {k: n / total for k, n in counts.items()}
    )


def build_profile(path: Path, names: Sequence[str] | None = None) -> Profile:
    """Profile the reference file ``path``. ``names`` picks and orders its columns (default:
    every column)."""
    columns = read_columns(path)
    if names is not None:
        missing = [n for n in names if n not in columns]
        if missing:
            raise ValueError(f"{path.name} has no column {', '.join(missing)}")
        columns = {n: columns[n] for n in names}
    rows = len(next(iter(columns.values()))) if columns else 0
    if rows == 0:
        raise ValueError(f"{path.name} has no rows")
    features = tuple(profile_feature(name, values) for name, values in columns.items())
    return Profile(rows, features, _source(path))


def _source(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"file": path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def load_or_build(reference: Path, names: Sequence[str] | None = None) -> Profile:
    """The profile of ``reference``: the cached ``reference_profile.json`` beside it when it
    was made from this very file, else built now and cached (when the folder is writable)."""
    cache = reference.parent / PROFILE_FILE
    if cache.is_file():
        try:
            cached = Profile.from_document(orjson.loads(cache.read_bytes()))
        except (ValueError, KeyError, TypeError):
            cached = None
        if cached is not None and cached.source == _source(reference):
            return cached
    profile = build_profile(reference, names)
    with contextlib.suppress(OSError):  # a read-only repository: profiled again next start
        profile.save(cache)
    return profile
