"""The store's queries, once for both engines (DB-API cursors; SQL written with ``?``
placeholders, turned into ``%s`` for PostgreSQL). store_sqlite.py and store_postgres.py add
the connection and the transactions."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from modelserve.monitoring.store import (
    SCHEMA,
    Confusion,
    DriftPoint,
    ErrorSums,
    LabelRow,
    PredictionRow,
    VersionCounts,
    chunks,
)

__all__ = ["SqlStore"]

BATCH_ROWS = 500


class SqlStore:
    """The queries; subclasses give ``_transaction`` (a cursor in a write transaction) and
    ``_query`` (a cursor for reads) and the placeholder style."""

    url = ""
    placeholder = "?"

    def __init__(self) -> None:
        self._lock = threading.Lock()  # one connection: one user at a time

    # ---- engine hooks ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, exclusive: bool = False) -> Iterator[Any]:
        """A cursor in a write transaction; ``exclusive``: no other writer may read what it
        reads before it commits (a compare-and-set)."""
        raise NotImplementedError
        yield

    @contextlib.contextmanager
    def _query(self) -> Iterator[Any]:
        raise NotImplementedError
        yield

    def _sql(self, text: str) -> str:
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    def _create(self) -> None:
        with self._transaction() as cur:
            for statement in SCHEMA:
                cur.execute(statement)

    # ---- predictions and labels --------------------------------------------------------------

    def write_predictions(self, rows: Sequence[PredictionRow]) -> None:
        sql = self._sql(
            "INSERT INTO predictions (model, version, id, row, time_ns, pred_text, pred_num) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (model, id, row, version) DO UPDATE SET "
            "time_ns = excluded.time_ns, pred_text = excluded.pred_text, "
            "pred_num = excluded.pred_num"
        )
        with self._transaction() as cur:
            for part in chunks(rows, BATCH_ROWS):
                cur.executemany(
                    sql,
                    [(r.model, r.version, r.id, r.row, r.time_ns, r.text, r.num) for r in part],
                )

    def add_labels(self, model: str, labels: Sequence[LabelRow], now_ns: int) -> set[str]:
        sql = self._sql(
            "UPDATE predictions SET label_text = ?, label_num = ?, label_ns = ? "
            "WHERE model = ? AND id = ? AND row = ?"
        )
        matched: set[str] = set()
        with self._transaction() as cur:
            for label in labels:
                cur.execute(sql, (label.text, label.num, now_ns, model, label.id, label.row))
                if cur.rowcount and cur.rowcount > 0:
                    matched.add(label.id)
        return matched

    def counts(self, model: str, since_ns: int = 0) -> dict[str, VersionCounts]:
        sql = self._sql(
            "SELECT version, COUNT(*), COUNT(label_ns) FROM predictions "
            "WHERE model = ? AND time_ns >= ? GROUP BY version"
        )
        with self._query() as cur:
            cur.execute(sql, (model, since_ns))
            return {str(v): VersionCounts(int(n), int(k)) for v, n, k in cur.fetchall()}

    def confusion(self, model: str, version: str, since_ns: int = 0) -> Confusion:
        sql = self._sql(
            "SELECT pred_text, label_text, COUNT(*) FROM predictions WHERE model = ? AND "
            "version = ? AND time_ns >= ? AND label_ns IS NOT NULL AND pred_text IS NOT NULL "
            "AND label_text IS NOT NULL GROUP BY pred_text, label_text"
        )
        with self._query() as cur:
            cur.execute(sql, (model, version, since_ns))
            return Confusion({(str(p), str(lb)): int(n) for p, lb, n in cur.fetchall()})

    def error_sums(self, model: str, version: str, since_ns: int = 0) -> ErrorSums:
        sql = self._sql(
            "SELECT COUNT(*), SUM(ABS(pred_num - label_num)), "
            "SUM((pred_num - label_num) * (pred_num - label_num)) FROM predictions "
            "WHERE model = ? AND version = ? AND time_ns >= ? AND label_ns IS NOT NULL "
            "AND pred_num IS NOT NULL AND label_num IS NOT NULL"
        )
        with self._query() as cur:
            cur.execute(sql, (model, version, since_ns))
            count, abs_sum, sq_sum = cur.fetchone()
            return ErrorSums(int(count or 0), float(abs_sum or 0.0), float(sq_sum or 0.0))

    def models(self) -> list[str]:
        with self._query() as cur:
            cur.execute("SELECT DISTINCT model FROM predictions")
            return sorted(str(m) for (m,) in cur.fetchall())

    # ---- drift -------------------------------------------------------------------------------

    def add_drift(self, model: str, point: DriftPoint) -> None:
        sql = self._sql(
            "INSERT INTO drift (model, version, time_ns, window_rows, drifted, features) "
            "VALUES (?, ?, ?, ?, ?, ?)"
        )
        with self._transaction() as cur:
            cur.execute(
                sql,
                (
                    model,
                    point.version,
                    point.time_ns,
                    point.window_rows,
                    int(point.drifted),
                    point.features,
                ),
            )

    def latest_drift(self, model: str) -> dict[str, DriftPoint]:
        sql = self._sql(
            "SELECT d.version, d.time_ns, d.window_rows, d.drifted, d.features FROM drift d "
            "JOIN (SELECT version, MAX(time_ns) AS t FROM drift WHERE model = ? "
            "GROUP BY version) m ON d.version = m.version AND d.time_ns = m.t "
            "WHERE d.model = ?"
        )
        with self._query() as cur:
            cur.execute(sql, (model, model))
            return {
                str(v): DriftPoint(str(v), int(t), int(n), bool(d), str(f))
                for v, t, n, d, f in cur.fetchall()
            }

    # ---- retention ---------------------------------------------------------------------------

    def prune(self, model: str, before_ns: int) -> int:
        deleted = 0
        with self._transaction() as cur:
            for table in ("predictions", "drift"):
                cur.execute(
                    self._sql(f"DELETE FROM {table} WHERE model = ? AND time_ns < ?"),
                    (model, before_ns),
                )
                deleted += max(cur.rowcount or 0, 0)
        return deleted

    # ---- state (traffic experiments and other components that must share it) -----------------

    def get_state(self, namespace: str, key: str) -> str | None:
        sql = self._sql("SELECT value FROM state WHERE namespace = ? AND key = ?")
        with self._query() as cur:
            cur.execute(sql, (namespace, key))
            row = cur.fetchone()
            return None if row is None else str(row[0])

    def put_state(self, namespace: str, key: str, value: str) -> None:
        sql = self._sql(
            "INSERT INTO state (namespace, key, value, updated_ns) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, "
            "updated_ns = excluded.updated_ns"
        )
        with self._transaction() as cur:
            cur.execute(sql, (namespace, key, value, time.time_ns()))

    def swap_state(self, namespace: str, key: str, value: str) -> str | None:
        read = self._sql("SELECT value FROM state WHERE namespace = ? AND key = ?")
        write = self._sql(
            "INSERT INTO state (namespace, key, value, updated_ns) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, "
            "updated_ns = excluded.updated_ns"
        )
        with self._transaction(exclusive=True) as cur:
            cur.execute(read, (namespace, key))
            row = cur.fetchone()
            cur.execute(write, (namespace, key, value, time.time_ns()))
            return None if row is None else str(row[0])

    def replace_state(
        self, namespace: str, key: str, expected: str | None, value: str | None
    ) -> bool:
        read = self._sql("SELECT value FROM state WHERE namespace = ? AND key = ?")
        write = self._sql(
            "INSERT INTO state (namespace, key, value, updated_ns) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, "
            "updated_ns = excluded.updated_ns"
        )
        delete = self._sql("DELETE FROM state WHERE namespace = ? AND key = ?")
        with self._transaction(exclusive=True) as cur:
            cur.execute(read, (namespace, key))
            row = cur.fetchone()
            if (None if row is None else str(row[0])) != expected:
                return False
            if value is None:
                cur.execute(delete, (namespace, key))
            else:
                cur.execute(write, (namespace, key, value, time.time_ns()))
            return True

    def delete_state(self, namespace: str, key: str) -> None:
        sql = self._sql("DELETE FROM state WHERE namespace = ? AND key = ?")
        with self._transaction() as cur:
            cur.execute(sql, (namespace, key))

    def states(self, namespace: str) -> dict[str, str]:
        sql = self._sql("SELECT key, value FROM state WHERE namespace = ?")
        with self._query() as cur:
            cur.execute(sql, (namespace,))
            return {str(k): str(v) for k, v in cur.fetchall()}
