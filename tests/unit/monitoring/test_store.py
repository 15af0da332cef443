"""The stores, SQLite and a real PostgreSQL: predictions, labels joined by id for any version,
aggregates, drift points, retention, the state table, and several processes writing at once."""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from modelserve.monitoring.accuracy import accuracy_since
from modelserve.monitoring.store import (
    DriftPoint,
    LabelRow,
    PredictionRow,
    Store,
    canonical,
    default_state_dir,
    number,
    open_store,
)
from modelserve.monitoring.store_postgres import redact
from modelserve.monitoring.store_sqlite import SqliteStore
from tests.postgres_helpers import postgres_server

StoreUrl = Callable[[], str]


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty store of each engine: a SQLite file, or a database of its own."""
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    server: str = request.getfixturevalue("postgres")
    name = f"t_{uuid.uuid4().hex}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return server.rsplit("/", 1)[0] + f"/{name}"


def _row(id_: str, value: object, version: str = "1", row: int = 0, t: int = 100) -> PredictionRow:
    return PredictionRow("m", version, id_, row, t, canonical(value), number(value))


def _label(id_: str, value: object, row: int = 0) -> LabelRow:
    return LabelRow(id_, row, canonical(value), number(value))


def test_canonical_values_compare_as_labels_should() -> None:
    assert canonical(1) == canonical(1.0) == canonical("1") == "1"
    assert canonical(True) == "true" and canonical(b"cat") == "cat"
    assert canonical(0.5) == "0.5" and canonical(None) is None
    assert number("x") is None and number(2) == 2.0 and number(float("nan")) is None


def test_default_store_is_sqlite_in_the_state_dir(tmp_path: Path) -> None:
    store = open_store(None, tmp_path)
    assert isinstance(store, SqliteStore) and store.path == tmp_path / "modelserve.db"
    store.close()


def test_labels_join_any_version_and_figures_aggregate(store_url: str, tmp_path: Path) -> None:
    store = open_store(store_url, tmp_path)
    store.write_predictions(
        [_row("a", 0), _row("b", 1), _row("c", 2, t=50), _row("a", 1, version="2")]
    )
    store.write_predictions([_row("b", 2)])  # the same id again: replaced, not doubled
    matched = store.add_labels("m", [_label("a", 1), _label("b", 2), _label("zz", 0)], 999)
    assert matched == {"a", "b"}
    counts = store.counts("m")
    assert (counts["1"].predictions, counts["1"].labelled) == (3, 2)
    assert (counts["2"].predictions, counts["2"].labelled) == (1, 1)
    assert store.confusion("m", "1").pairs == {("0", "1"): 1, ("2", "2"): 1}
    assert store.confusion("m", "2").pairs == {("1", "1"): 1}
    assert store.counts("m", since_ns=60)["1"].predictions == 2
    figures = accuracy_since(store, "m", "1", 0, min_labels=2)
    assert figures is not None and figures.accuracy == 0.5
    assert accuracy_since(store, "m", "1", 0, min_labels=3) is None
    assert store.models() == ["m"]
    store.close()


def test_regression_sums(store_url: str, tmp_path: Path) -> None:
    store = open_store(store_url, tmp_path)
    store.write_predictions([_row("a", 1.5), _row("b", 3.0), _row("c", 0.0)])
    store.add_labels("m", [_label("a", 1.0), _label("b", 5.0)], 1)
    sums = store.error_sums("m", "1")
    store.close()
    assert (sums.count, sums.abs_sum, sums.sq_sum) == (2, 2.5, 4.25)


def test_drift_points_retention_and_state(store_url: str, tmp_path: Path) -> None:
    store = open_store(store_url, tmp_path)
    store.write_predictions([_row("old", 0, t=10), _row("new", 0, t=1000)])
    store.add_drift("m", DriftPoint("1", 10, 100, False, "{}"))
    store.add_drift("m", DriftPoint("1", 20, 200, True, '{"x": 1}'))
    store.add_drift("m", DriftPoint("2", 15, 50, False, "{}"))
    latest = store.latest_drift("m")
    assert latest["1"].window_rows == 200 and latest["1"].drifted and latest["2"].time_ns == 15
    assert store.prune("m", before_ns=500) == 4  # one prediction, three drift points
    assert store.counts("m")["1"].predictions == 1 and store.latest_drift("m") == {}
    assert store.get_state("experiments", "iris") is None
    store.put_state("experiments", "iris", '{"arm": "b"}')
    store.put_state("experiments", "iris", '{"arm": "c"}')
    store.put_state("experiments", "mlp", "{}")
    assert store.get_state("experiments", "iris") == '{"arm": "c"}'
    assert store.states("experiments") == {"iris": '{"arm": "c"}', "mlp": "{}"}
    assert store.swap_state("alerts", "m/1/drift", "1") is None
    assert store.swap_state("alerts", "m/1/drift", "1") == "1"
    assert store.swap_state("alerts", "m/1/drift", "0") == "1"
    store.delete_state("experiments", "mlp")
    assert store.states("experiments") == {"iris": '{"arm": "c"}'}
    store.close()


def _writer(url: str, worker: int) -> None:
    store: Store = open_store(url, Path("/nonexistent"))
    for batch in range(20):
        rows = [
            PredictionRow("m", "1", f"w{worker}-{batch}-{i}", 0, 1, "0", 0.0) for i in range(50)
        ]
        store.write_predictions(rows)
        store.add_labels("m", [LabelRow(f"w{worker}-{batch}-0", 0, "0", 0.0)], 2)
        store.swap_state("alerts", "m/1/drift", str(batch % 2))
    store.close()


def test_processes_writing_at_once_lose_nothing(store_url: str, tmp_path: Path) -> None:
    open_store(store_url, tmp_path).close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(store_url, w)) for w in range(3)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
        assert process.exitcode == 0
    store = open_store(store_url, tmp_path)
    counts = store.counts("m")["1"]
    store.close()
    assert (counts.predictions, counts.labelled) == (3 * 20 * 50, 3 * 20)


def test_default_state_dir_is_per_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    first = default_state_dir(tmp_path / "models")
    assert first.parent == tmp_path / "modelserve" and first.name.startswith("models-")
    assert default_state_dir(tmp_path / "models") == first
    assert default_state_dir(tmp_path / "other" / "models") != first


def test_postgres_errors_are_one_line_without_the_password(tmp_path: Path) -> None:
    assert redact("postgresql://ada:s3cret@db:5432/x") == "postgresql://ada:***@db:5432/x"
    with pytest.raises(ValueError, match="cannot connect") as caught:
        open_store("postgresql://ada:s3cret@127.0.0.1:9/x", tmp_path)
    assert "s3cret" not in str(caught.value)
