"""One shard, end to end: read, convert, predict in batches, write.

Three stages, so that an engine can overlap them (read the next shard while this one runs):
``load`` (read + convert, I/O bound), ``infer`` (the model), ``store`` (encode + write).

A failing batch does not fail its rows' neighbours: it is cut in halves until the rows the model
refuses are alone, and each of those becomes a bad row with the model's reason (k bad rows in a
batch of n cost about 2k·log2(n) extra calls). A model that breaks its contract (an output
missing, or with other rows than given: InternalError) fails the shard: no row is to blame.
A shard with more bad rows than the whole job may have stops there: the job has failed anyway.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from modelserve.errors import InternalError, ServerError
from modelserve.offline.batch.columns import ColumnPlan, output_columns, to_arrays
from modelserve.offline.batch.latency import LatencyHistogram
from modelserve.offline.batch.predictors import Predictor
from modelserve.offline.batch.readers import read_shard
from modelserve.offline.batch.sources import Shard
from modelserve.offline.batch.writer import encode_table, part_name, write_atomic, write_jsonl
from modelserve.runtimes.base import Arrays
from modelserve.types import TensorSpec

__all__ = ["ERRORS_DIR", "JobPlan", "ShardResult", "ShardRunner", "errors_name"]

ERRORS_DIR = "_errors"
"""Each shard's bad rows, beside its part (merged into ``_errors.jsonl`` at the end)."""

Progress = Callable[[int], None]
PROGRESS_ROWS = 8192
"""Rows between two progress reports (and two looks at the stop flag) within a shard."""


def errors_name(index: int) -> str:
    return f"part-{index:05d}.jsonl"


@dataclass(frozen=True, slots=True)
class JobPlan:
    """What every shard of a job shares (sent to each Dask worker once per task)."""

    output: str
    format: str
    columns: ColumnPlan
    batch_size: int
    """Rows per predict call (already capped by the model's max_batch_size)."""
    error_budget: int
    """The most bad rows the whole job may have."""


@dataclass(slots=True)
class ShardResult:
    index: int
    part: str
    rows_in: int
    rows: int
    errors: int
    sha256: str
    bytes: int
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    failed: str = ""
    """Why the shard could not be processed (no part file was written for it)."""
    over_budget: bool = False
    """It stopped because the job had more bad rows than allowed (``errors`` were written)."""


class ErrorBudgetExceeded(Exception):
    """A shard found more bad rows than the job may have; they are written to its error file
    (so that the user sees them) and the shard stops."""

    def __init__(self, message: str, errors: int) -> None:
        super().__init__(message)
        self.errors = errors


class Cancelled(Exception):
    """The job is stopping (Ctrl-C, or it failed elsewhere): this shard stops between batches."""


@dataclass(slots=True)
class Loaded:
    shard: Shard
    table: Any
    arrays: Arrays
    good: npt.NDArray[Any]
    """Rows (of ``table``) that became model input."""
    errors: dict[int, str]


@dataclass(slots=True)
class Inferred:
    loaded: Loaded
    outputs: Arrays
    rows: npt.NDArray[Any]
    """Rows (of the table) with outputs, in order."""
    latency: LatencyHistogram


class ShardRunner:
    def __init__(
        self, plan: JobPlan, predictor: Predictor, stop: threading.Event | None = None
    ) -> None:
        self.plan = plan
        self.predictor = predictor
        self.output = Path(plan.output)
        self._stop = stop or threading.Event()

    def run(self, shard: Shard, progress: Progress | None = None) -> ShardResult:
        """The three stages in a row (a Dask task)."""
        try:
            return self.store(self.infer(self.load(shard), progress))
        except Exception as exc:
            return failed_result(shard, self.plan.format, exc)

    # ---- stages ------------------------------------------------------------------------------

    def load(self, shard: Shard) -> Loaded:
        table, errors = read_shard(shard, self.plan.columns)
        arrays, good = to_arrays(table, self.plan.columns, errors)
        loaded = Loaded(shard, table, arrays, good, errors)
        self._check_budget(loaded)
        return loaded

    def infer(self, loaded: Loaded, progress: Progress | None = None) -> Inferred:
        predictor = self.predictor
        count = len(loaded.good)
        size = self.plan.batch_size
        durations: list[int] = []
        collected = _Collector(predictor.outputs)
        if count:
            first = {n: a[: min(size, count)] for n, a in loaded.arrays.items()}
            predictor.check(first if predictor.batched else {n: a[0] for n, a in first.items()})
        failed: dict[int, str] = {}
        predict = predictor.predict
        clock = time.perf_counter_ns
        timed = durations.append
        stopping = self._stop.is_set
        items = list(loaded.arrays.items())
        single = items[0] if len(items) == 1 else None
        report_every = max(1, PROGRESS_ROWS // size)
        unreported = 0
        for number, start in enumerate(range(0, count, size)):
            stop = start + size if start + size < count else count
            if single is not None:
                batch = {single[0]: single[1][start:stop]}
            else:
                batch = {n: a[start:stop] for n, a in items}
            began = clock()
            try:
                produced = predict(batch)
            except InternalError:
                raise  # the model broke its contract (outputs, rows): no row is to blame
            except Exception as exc:
                timed(clock() - began)
                self._bisect(loaded, start, stop, exc, collected, failed, durations)
            else:
                timed(clock() - began)
                collected.put(produced)
            unreported += stop - start
            if number % report_every == 0:
                if stopping():
                    raise Cancelled("the job is stopping")
                if progress is not None:
                    progress(unreported)
                unreported = 0
        if progress is not None and unreported:
            progress(unreported)
        for position, reason in failed.items():
            loaded.errors.setdefault(int(loaded.good[position]), reason)
        kept = np.arange(count)
        if failed:
            kept = kept[~np.isin(kept, np.fromiter(failed, dtype=np.intp, count=len(failed)))]
        outputs = collected.result()
        outputs = (
            predictor.finish(outputs, len(kept))
            if outputs is not None
            else _empty_outputs(predictor)
        )
        return Inferred(loaded, outputs, loaded.good[kept], LatencyHistogram.of(durations))

    def store(self, inferred: Inferred) -> ShardResult:
        import pyarrow as pa

        loaded = inferred.loaded
        shard = loaded.shard
        table_in = loaded.table
        if len(inferred.rows) != table_in.num_rows:
            table_in = table_in.take(inferred.rows)
        columns = [(n, table_in.column(n)) for n in self.plan.columns.keep]
        columns += output_columns(self.predictor.outputs, inferred.outputs)
        table = pa.Table.from_arrays([c for _, c in columns], names=[n for n, _ in columns])
        self._write_errors(loaded)
        name = part_name(shard.index, self.plan.format)
        written = write_atomic(self.output, name, encode_table(table, self.plan.format))
        return ShardResult(
            shard.index,
            written.name,
            loaded.table.num_rows,
            table.num_rows,
            len(loaded.errors),
            written.sha256,
            written.bytes,
            inferred.latency,
        )

    # ---- helpers -----------------------------------------------------------------------------

    def _check_budget(self, loaded: Loaded) -> None:
        found = len(loaded.errors)
        if found <= self.plan.error_budget:
            return
        self._write_errors(loaded)
        raise ErrorBudgetExceeded(
            f"{found} bad rows in shard {loaded.shard.index}, more than the job may have "
            f"({self.plan.error_budget})",
            found,
        )

    def _write_errors(self, loaded: Loaded) -> None:
        folder = self.output / ERRORS_DIR
        name = errors_name(loaded.shard.index)
        if loaded.errors:
            folder.mkdir(exist_ok=True)
            write_jsonl(folder, name, self._error_records(loaded))
        else:
            (folder / name).unlink(missing_ok=True)

    def _bisect(
        self,
        loaded: Loaded,
        start: int,
        stop: int,
        exc: Exception,
        collected: _Collector,
        failed: dict[int, str],
        durations: list[int],
    ) -> None:
        """Find the rows of [start, stop) the model refuses; predict the others."""
        if stop - start == 1:
            failed[start] = _reason(exc)
            if len(failed) + len(loaded.errors) > self.plan.error_budget:
                for position, reason in failed.items():
                    loaded.errors.setdefault(int(loaded.good[position]), reason)
                self._check_budget(loaded)
            return
        middle = (start + stop) // 2
        for low, high in ((start, middle), (middle, stop)):
            batch = {n: a[low:high] for n, a in loaded.arrays.items()}
            began = time.perf_counter_ns()
            try:
                produced = self.predictor.predict(batch)
            except InternalError:
                raise
            except Exception as inner:
                durations.append(time.perf_counter_ns() - began)
                self._bisect(loaded, low, high, inner, collected, failed, durations)
            else:
                durations.append(time.perf_counter_ns() - began)
                collected.put(produced)

    def _error_records(self, loaded: Loaded) -> list[dict[str, Any]]:
        shard = loaded.shard
        keep = self.plan.columns.keep
        rows = sorted(loaded.errors)
        values = {
            name: loaded.table.column(name).take(rows).to_pylist()
            for name in keep
            if loaded.table.num_rows
        }
        records = []
        for i, row in enumerate(rows):
            record: dict[str, Any] = {
                "row": shard.first_row + row,
                "file": shard.source,
                "file_row": shard.first_record + row,
                "reason": loaded.errors[row],
            }
            for name in keep:
                if name in values and row < loaded.table.num_rows:
                    record.setdefault(name, _jsonable(values[name][i]))
            records.append(record)
        return records


def failed_result(shard: Shard, fmt: str, exc: BaseException) -> ShardResult:
    over = isinstance(exc, ErrorBudgetExceeded)
    return ShardResult(
        shard.index,
        part_name(shard.index, fmt),
        shard.rows,
        0,
        exc.errors if isinstance(exc, ErrorBudgetExceeded) else 0,
        "",
        0,
        failed=_reason(exc),
        over_budget=over,
    )


class _Collector:
    """A shard's outputs, batch by batch, joined once at the end (a list append per batch is
    cheaper than writing each batch into preallocated arrays; one concatenate per output).
    Pieces arrive in row order, bisection included."""

    def __init__(self, outputs: tuple[TensorSpec, ...]) -> None:
        self.names = [spec.name for spec in outputs]
        self.pieces: list[Arrays] = []

    def put(self, produced: Arrays) -> None:
        self.pieces.append(produced)

    def result(self) -> Arrays | None:
        """The outputs of every row that has them, in row order (None: no batch ran)."""
        pieces = self.pieces
        if not pieces:
            return None
        if len(pieces) == 1:
            return {name: np.asarray(pieces[0][name]) for name in self.names}
        joined: Arrays = {}
        for name in self.names:
            try:
                joined[name] = np.concatenate([np.asarray(p[name]) for p in pieces])
            except ValueError:
                raise InternalError(
                    f"output '{name}' has another shape per row in some batches"
                ) from None
        return joined


def _empty_outputs(predictor: Predictor) -> Arrays:
    from modelserve.codecs.tensors import V2_TO_NUMPY

    out: Arrays = {}
    for spec in predictor.outputs:
        trailing = spec.shape[1:] if predictor.batched else spec.shape
        shape = (0, *(max(d, 0) for d in trailing))
        out[spec.name] = np.zeros(shape, dtype=V2_TO_NUMPY[spec.datatype])
    return out


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ServerError):
        return exc.message
    if isinstance(exc, ErrorBudgetExceeded):
        return str(exc)
    text = str(exc).strip().split("\n", 1)[0]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.hex()
    return value
