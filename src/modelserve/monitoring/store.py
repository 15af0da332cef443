"""The monitoring store: predictions, their delayed labels, drift points and a small key-value
state table, in SQLite (WAL, default: ``<state dir>/modelserve.db``) or PostgreSQL
(``--store postgresql://…``; store_postgres.py).

One row per predicted row: a request with a batch of N rows stores N rows (``row`` 0…N-1)
under its request id. Values are kept twice, as canonical text (classification: ``1``, ``1.0``
and ``true`` compare as a label should) and as a number (regression), so that every figure is
an SQL aggregate: a confusion matrix (GROUP BY prediction, label) or sums of errors, never the
rows themselves. The schema is plain SQL both engines take.

Every method is blocking: the service (monitoring/service.py) calls them on its own thread,
never on the event loop.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "SCHEMA",
    "Confusion",
    "DriftPoint",
    "ErrorSums",
    "LabelRow",
    "PredictionRow",
    "Store",
    "VersionCounts",
    "canonical",
    "default_state_dir",
    "number",
    "open_store",
]

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS predictions (
        model TEXT NOT NULL, version TEXT NOT NULL, id TEXT NOT NULL, row INTEGER NOT NULL,
        time_ns BIGINT NOT NULL, pred_text TEXT, pred_num DOUBLE PRECISION,
        label_text TEXT, label_num DOUBLE PRECISION, label_ns BIGINT,
        PRIMARY KEY (model, id, row, version))""",
    "CREATE INDEX IF NOT EXISTS predictions_by_time ON predictions (model, version, time_ns)",
    """CREATE TABLE IF NOT EXISTS drift (
        model TEXT NOT NULL, version TEXT NOT NULL, time_ns BIGINT NOT NULL,
        window_rows INTEGER NOT NULL, drifted INTEGER NOT NULL, features TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS drift_by_time ON drift (model, version, time_ns)",
    """CREATE TABLE IF NOT EXISTS state (
        namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
        updated_ns BIGINT NOT NULL, PRIMARY KEY (namespace, key))""",
)
"""The tables, in SQL that SQLite and PostgreSQL both take (placeholders are added per engine)."""


def canonical(value: Any) -> str | None:
    """The text a prediction or label is compared as: integral numbers without a fraction
    (``1``, ``1.0``, numpy ints alike), booleans ``true``/``false``, text as is."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isfinite(as_float) and as_float == int(as_float):
        return str(int(as_float))
    return repr(as_float)


def number(value: Any) -> float | None:
    """The value as a finite float, else None (text labels of a classifier)."""
    if isinstance(value, bool) or value is None:
        return float(value) if isinstance(value, bool) else None
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        return None
    return as_float if math.isfinite(as_float) else None


@dataclass(frozen=True, slots=True)
class PredictionRow:
    model: str
    version: str
    id: str
    row: int
    time_ns: int
    text: str | None
    num: float | None


@dataclass(frozen=True, slots=True)
class LabelRow:
    """The label of row ``row`` of the prediction(s) with request id ``id``."""

    id: str
    row: int
    text: str | None
    num: float | None


@dataclass(frozen=True, slots=True)
class VersionCounts:
    predictions: int
    labelled: int


@dataclass(frozen=True, slots=True)
class Confusion:
    """(prediction, label) -> count, of the labelled predictions of one version and window."""

    pairs: dict[tuple[str, str], int]

    @property
    def total(self) -> int:
        return sum(self.pairs.values())


@dataclass(frozen=True, slots=True)
class ErrorSums:
    """Regression: count, sum of absolute errors, sum of squared errors."""

    count: int
    abs_sum: float
    sq_sum: float


@dataclass(frozen=True, slots=True)
class DriftPoint:
    """One tested drift window of one version."""

    version: str
    time_ns: int
    window_rows: int
    drifted: bool
    features: str
    """JSON: feature -> {method, value, threshold, drifted, psi, …}."""


class Store(Protocol):
    """What the monitoring service and the traffic experiments need of a store."""

    url: str
    """Where it is, without credentials (for logs)."""

    def write_predictions(self, rows: Sequence[PredictionRow]) -> None: ...

    def add_labels(self, model: str, labels: Sequence[LabelRow], now_ns: int) -> set[str]:
        """Join labels to the predictions of ``model`` with their ids, any version; the ids
        that matched."""
        ...

    def counts(self, model: str, since_ns: int = 0) -> dict[str, VersionCounts]:
        """Predictions and labelled predictions per version since ``since_ns``."""
        ...

    def confusion(self, model: str, version: str, since_ns: int = 0) -> Confusion: ...

    def error_sums(self, model: str, version: str, since_ns: int = 0) -> ErrorSums: ...

    def add_drift(self, model: str, point: DriftPoint) -> None: ...

    def latest_drift(self, model: str) -> dict[str, DriftPoint]:
        """The last tested window of each version."""
        ...

    def models(self) -> list[str]:
        """Models with stored predictions."""
        ...

    def prune(self, model: str, before_ns: int) -> int:
        """Delete what is older than ``before_ns``; rows deleted."""
        ...

    def get_state(self, namespace: str, key: str) -> str | None: ...

    def put_state(self, namespace: str, key: str, value: str) -> None: ...

    def swap_state(self, namespace: str, key: str, value: str) -> str | None:
        """Set ``key`` to ``value`` and return what it was (None: not set), atomically: of
        several processes swapping at once, one sees each change."""
        ...

    def replace_state(
        self, namespace: str, key: str, expected: str | None, value: str | None
    ) -> bool:
        """Set ``key`` to ``value`` (None: delete it) only if it is ``expected`` now (None:
        not set), atomically; False when another process changed it first."""
        ...

    def delete_state(self, namespace: str, key: str) -> None: ...

    def states(self, namespace: str) -> dict[str, str]: ...

    def close(self) -> None: ...


def default_state_dir(repository: Path | str) -> Path:
    """``$XDG_STATE_HOME/modelserve/<repository name>-<hash>`` (``~/.local/state`` without
    XDG_STATE_HOME): one per repository, so that two servers of two repositories never mix
    their predictions, and the same repository finds its store again after a restart."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    text = str(repository if isinstance(repository, str) else repository.resolve())
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    name = Path(text.rstrip("/")).name or "repository"
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    return Path(base) / "modelserve" / f"{safe}-{digest}"


def open_store(url: str | None, state_dir: Path) -> Store:
    """The store ``url`` names: None or a path (``sqlite:///path`` too) is SQLite (default
    ``<state_dir>/modelserve.db``); ``postgresql://…`` (or ``postgres://``) is PostgreSQL."""
    if url is not None and url.startswith(("postgresql://", "postgres://")):
        from modelserve.monitoring.store_postgres import PostgresStore

        return PostgresStore(url)
    from modelserve.monitoring.store_sqlite import SqliteStore

    scheme, sep, _ = (url or "").partition("://")
    if sep and scheme != "sqlite":
        raise ValueError(
            f"'{scheme}://' is not a store: give a SQLite file path (sqlite:///path) or a "
            "postgresql:// URL"
        )
    if url is None:
        path = state_dir / "modelserve.db"
    elif url.startswith("sqlite://"):
        path = Path(url.removeprefix("sqlite://"))
    else:
        path = Path(url)
    return SqliteStore(path.expanduser())


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
