"""The PostgreSQL store (``--store postgresql://user:password@host:port/db``): one database
several replicas (and their ``--workers``) share. The only module that imports psycopg
(``pip install 'modelserve[postgres]'``).

The queries are store_sql.py's. Writes run in one transaction each; a compare-and-set
(``swap_state``) and the schema's creation hold a transaction-scoped advisory lock, so that
two processes never both see the old value (or both create the tables).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

from modelserve.monitoring.store_sql import SqlStore

__all__ = ["PostgresStore", "redact"]

LOCK_KEY = 0x6D6F6E69  # "moni": this store's advisory lock
CONNECT_TIMEOUT_S = 10


def redact(url: str) -> str:
    """The URL without its password (for logs)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


class PostgresStore(SqlStore):
    placeholder = "%s"

    def __init__(self, url: str) -> None:
        super().__init__()
        try:
            import psycopg
        except ImportError:
            raise ValueError(
                "a PostgreSQL store needs psycopg: pip install 'modelserve[postgres]'"
            ) from None
        self._psycopg = psycopg
        self._dsn = url
        self.url = redact(url)
        self._conn: Any = None
        with self._lock:
            self._connection()
        self._create()

    def _connection(self) -> Any:
        """The connection, made again when the last one broke (a restarted database)."""
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            try:
                conn = self._psycopg.connect(
                    self._dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
                )
            except self._psycopg.Error as exc:
                raise ValueError(f"cannot connect to {self.url}: {exc}".strip()) from None
            self._conn = conn
        return conn

    @contextlib.contextmanager
    def _transaction(self, exclusive: bool = False) -> Iterator[Any]:
        with self._lock:
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                if exclusive:
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
                yield cur

    @contextlib.contextmanager
    def _query(self) -> Iterator[Any]:
        with self._lock:
            conn = self._connection()
            with conn.cursor() as cur:
                yield cur

    def _create(self) -> None:
        from modelserve.monitoring.store import SCHEMA

        with self._transaction(exclusive=True) as cur:
            for statement in SCHEMA:
                cur.execute(statement)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
