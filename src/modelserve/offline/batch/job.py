"""A batch job: plan it, resume it, run it on an engine, and close it with a summary.

1. Resolve the inputs and the model (the version the server would answer with, or the pinned
   one), read the first rows of the first file, and bind columns to the model's inputs.
2. Lock the output folder; resume from its manifest when it holds this same job (a shard is
   done when its part file is there), else plan the shards and write a fresh manifest.
3. Run the pending shards; the manifest is rewritten as they finish (at most every
   ``SAVE_EVERY_S``: the part files are the truth, see manifest.py). The job stops as soon as
   its bad rows exceed ``max_error_rate`` of all rows: it cannot succeed any more.
4. Merge the shards' bad rows into ``_errors.jsonl`` (input order), then write ``_SUCCESS``
   (the summary, as JSON) or raise JobFailed.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from modelserve.offline.batch.errors import BatchError, JobFailed
from modelserve.offline.batch.latency import LatencyHistogram
from modelserve.offline.batch.manifest import (
    ERRORS_FILE,
    SUCCESS,
    Manifest,
    ShardEntry,
    lock_output,
    prepare_output,
)
from modelserve.offline.batch.runner import ERRORS_DIR, JobPlan, ShardResult, errors_name
from modelserve.offline.batch.sources import FORMATS, InputFile, plan_shards, resolve_inputs
from modelserve.offline.batch.writer import part_name, write_atomic

__all__ = ["BatchJob", "JobOptions", "JobSummary", "ProgressSink"]

SAVE_EVERY_S = 0.5
ENGINES = ("local", "dask")


class ProgressSink(Protocol):
    def start(self, total_rows: int, done_rows: int) -> None: ...

    def advance(self, rows: int) -> None:
        """Rows processed (called from worker threads)."""

    def note(self, message: str) -> None:
        """A line for the user: resuming, a capped batch size, a shard that failed."""

    def finish(self) -> None: ...


@dataclass(frozen=True, slots=True)
class JobOptions:
    model: str
    """``NAME`` or ``NAME:VERSION``."""
    inputs: tuple[str, ...]
    output: Path
    repository: Path | None = None
    format: str = "parquet"
    batch_size: int = 1024
    engine: str = "local"
    scheduler: str | None = None
    workers: int | None = None
    server: str | None = None
    """A running server's URL: the rows go there instead of to a model loaded here."""
    keep_columns: tuple[str, ...] = ()
    features: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """input name ('' = the model's only input) -> columns, in order."""
    max_error_rate: float = 0.01
    shard_rows: int = 100_000
    overwrite: bool = False


@dataclass(slots=True)
class JobSummary:
    status: str
    """complete | failed"""
    output: str
    model: str
    version: str
    engine: str
    rows: int
    """Rows written (all runs of the job)."""
    errors: int
    """Bad rows (all runs)."""
    shards: int
    shards_run: int
    """Shards this run processed (a resumed job skips the finished ones)."""
    rows_run: int
    """Input rows this run processed."""
    elapsed_s: float
    """The whole run: planning, loading, processing, closing."""
    processing_s: float
    """From the engine being ready to the last shard written."""
    rows_per_s: float
    """``rows_run / processing_s``."""
    batches: int
    batch_p50_ms: float | None
    batch_p99_ms: float | None
    batch_size: int
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _check(options: JobOptions) -> None:
    if options.format not in FORMATS:
        raise BatchError(f"--format must be one of {', '.join(FORMATS)}")
    if options.batch_size < 1:
        raise BatchError("--batch-size must be at least 1")
    if not 0.0 <= options.max_error_rate <= 1.0:
        raise BatchError("--max-error-rate is a fraction between 0 and 1 (0.01 = 1 %)")
    if options.engine not in ENGINES:
        raise BatchError(f"--engine must be one of {', '.join(ENGINES)}")
    if options.server is not None:
        if options.repository is not None:
            raise BatchError("give --repository or --server, not both")
        if options.engine != "local" or options.scheduler is not None:
            raise BatchError("--server sends the rows to a running server: no --engine dask")
    elif options.repository is None:
        raise BatchError("give --repository (or --server URL of a running server)")
    if options.engine == "local" and options.scheduler is not None:
        raise BatchError("--scheduler needs --engine dask")
    if options.workers is not None:
        if options.workers < 1:
            raise BatchError("--workers must be at least 1")
        if options.scheduler is not None:
            raise BatchError(
                "--workers sizes a local Dask cluster; with --scheduler the "
                "cluster has its own workers"
            )
        if options.engine == "local" and options.server is None:
            raise BatchError("--workers is for --engine dask (or --server: requests in flight)")


class BatchJob:
    def __init__(self, options: JobOptions, progress: ProgressSink | None = None) -> None:
        self.options = options
        self.progress = progress
        self._errors = 0
        self._budget = 0
        self._latency = LatencyHistogram()

    def run(self) -> JobSummary:
        """Run the job to the end; raises BatchError before anything runs, JobFailed after."""
        started = time.monotonic()
        options = self.options
        _check(options)
        _require("pyarrow", "batch")
        files = resolve_inputs(options.inputs)
        predictor = self._predictor()
        try:
            columns, job = self._describe(files, predictor)
            with contextlib.closing(lock_output(options.output)):
                manifest = self._manifest(files, job)
                done = all(e.status == "done" for e in manifest.shards)
                if done and (options.output / SUCCESS).exists():
                    self._note("the job is already complete; nothing to do")
                    return self._summary(manifest, predictor, started, [], 0.0)
                (options.output / SUCCESS).unlink(missing_ok=True)
                plan = self._plan(predictor, columns, manifest)
                engine = self._engine(predictor)
                try:
                    return self._execute(engine, plan, manifest, predictor, started)
                finally:
                    engine.close()
        finally:
            predictor.close()  # idempotent: the Dask engine closed it already

    # ---- preparation -------------------------------------------------------------------------

    def _predictor(self) -> Any:
        options = self.options
        if options.server is not None:
            from modelserve.offline.batch.remote import connect

            return connect(options.server, options.model, options.workers)
        from modelserve.offline.batch.predictors import (
            ModelSource,
            choose_version,
            load_predictor,
            parse_model_ref,
        )

        assert options.repository is not None
        name, version = parse_model_ref(options.model)
        chosen = choose_version(options.repository, name, version)
        return load_predictor(ModelSource(str(options.repository.resolve()), name, chosen))

    def _describe(self, files: list[InputFile], predictor: Any) -> tuple[Any, dict[str, Any]]:
        from modelserve.offline.batch.columns import plan_columns
        from modelserve.offline.batch.readers import file_columns, read_sample

        options = self.options
        features = dict(options.features)
        if "" in features:
            if len(predictor.inputs) != 1:
                names = [s.name for s in predictor.inputs]
                raise BatchError(
                    f"the model has inputs {names}: say which one --features fills, as in "
                    f"--features {names[0]}=a,b,c"
                )
            features[predictor.inputs[0].name] = features.pop("")
        sample = read_sample(files[0])
        columns = plan_columns(
            predictor.inputs,
            predictor.outputs,
            predictor.batched,
            features,
            options.keep_columns,
            sample,
        )
        needed = columns.read_columns()
        for file in files[1:]:
            present = set(file_columns(file))
            missing = [name for name in needed if name not in present]
            if missing:
                raise BatchError(f"{file.path} has no column {missing[0]!r}")
        if options.format == "csv":
            _check_csv_keep(columns)
        job = {
            "model": predictor.identity(),
            "inputs": [{"path": f.path, "size": f.size, "mtime_ns": f.mtime_ns} for f in files],
            "columns": columns.describe(),
            "format": options.format,
            "shard_rows": options.shard_rows,
        }
        return columns, job

    def _manifest(self, files: list[InputFile], job: dict[str, Any]) -> Manifest:
        options = self.options
        manifest = prepare_output(options.output, job, options.overwrite)
        if manifest is not None:
            manifest.reconcile(options.output)
            done = sum(1 for e in manifest.shards if e.status == "done")
            self._note(f"resuming: {done} of {len(manifest.shards)} shards already done")
            return manifest
        shards = plan_shards(files, options.shard_rows)
        manifest = Manifest(
            job, [ShardEntry(s, part_name(s.index, options.format)) for s in shards]
        )
        manifest.save(options.output)
        return manifest

    def _plan(self, predictor: Any, columns: Any, manifest: Manifest) -> JobPlan:
        options = self.options
        size = options.batch_size
        if not predictor.batched:
            size = 1
        elif size > predictor.max_batch_size:
            self._note(
                f"model '{predictor.name}' takes at most {predictor.max_batch_size} rows per "
                f"call (max_batch_size): batches of {predictor.max_batch_size}"
            )
            size = predictor.max_batch_size
        total = sum(e.shard.rows for e in manifest.shards)
        self._budget = math.floor(options.max_error_rate * total + 1e-9)
        self._errors = sum(e.errors for e in manifest.shards if e.status == "done")
        return JobPlan(
            str(options.output.resolve()),
            options.format,
            columns,
            size,
            max(0, self._budget - self._errors),
        )

    def _engine(self, predictor: Any) -> Any:
        options = self.options
        if options.engine == "dask":
            _require("distributed", "dask")
            from modelserve.offline.batch.cluster import DaskEngine

            source = predictor.source
            predictor.close()  # the workers load their own
            return DaskEngine(source, options.scheduler, options.workers, self._note)
        from modelserve.offline.batch.engines import LocalEngine

        return LocalEngine(predictor)

    # ---- running -----------------------------------------------------------------------------

    def _execute(
        self, engine: Any, plan: JobPlan, manifest: Manifest, predictor: Any, started: float
    ) -> JobSummary:
        options = self.options
        output = options.output
        pending = [e.shard for e in manifest.shards if e.status != "done"]
        total = sum(e.shard.rows for e in manifest.shards)
        done_rows = total - sum(s.rows for s in pending)
        engine.start(plan)
        ready = time.monotonic()
        if self.progress is not None:
            self.progress.start(total, done_rows)
        last_save = [time.monotonic()]
        results: list[ShardResult] = []

        def on_result(result: ShardResult) -> bool:
            entry = manifest.shards[result.index]
            entry.record(result)
            results.append(result)
            self._latency.merge(result.latency)
            if result.failed and not result.over_budget:
                self._note(f"shard {result.index} ({entry.shard.source}) failed: {result.failed}")
            self._errors += result.errors
            now = time.monotonic()
            if now - last_save[0] >= SAVE_EVERY_S or result.failed:
                manifest.save(output)
                last_save[0] = now
            return self._errors <= self._budget

        advance = self.progress.advance if self.progress is not None else _ignore
        try:
            engine.run(pending, on_result, advance)
        finally:
            manifest.save(output)
            if self.progress is not None:
                self.progress.finish()
        finished = time.monotonic()
        self._merge_errors(manifest)
        summary = self._summary(manifest, predictor, started, results, finished - ready)
        summary.batch_size = plan.batch_size
        failed = [e for e in manifest.shards if e.status == "failed"]
        left = [e for e in manifest.shards if e.status != "done"]
        if self._errors > self._budget:
            summary.status = "failed"
            summary.reason = (
                f"{self._errors} bad rows, more than --max-error-rate {options.max_error_rate:g} "
                f"allows ({self._budget} of {total} rows); see {output / ERRORS_FILE}"
            )
        elif failed:
            summary.status = "failed"
            summary.reason = (
                f"{len(failed)} shard(s) failed (first: {failed[0].reason}); "
                "run the same command again to retry them"
            )
        elif left:
            summary.status = "failed"
            summary.reason = f"{len(left)} shard(s) did not run"
        if summary.status == "failed":
            raise JobFailed(summary.reason, summary)
        write_atomic(output, SUCCESS, json.dumps(summary.to_json(), indent=1).encode() + b"\n")
        return summary

    def _merge_errors(self, manifest: Manifest) -> None:
        folder = self.options.output / ERRORS_DIR
        chunks = []
        for entry in manifest.shards:
            path = folder / errors_name(entry.shard.index)
            if entry.errors and path.is_file():
                chunks.append(path.read_bytes())
        write_atomic(self.options.output, ERRORS_FILE, b"".join(chunks))

    def _summary(
        self,
        manifest: Manifest,
        predictor: Any,
        started: float,
        results: Sequence[ShardResult],
        processing_s: float,
    ) -> JobSummary:
        done = [e for e in manifest.shards if e.status == "done"]
        rows_run = sum(r.rows_in for r in results)
        latency = self._latency
        return JobSummary(
            status="complete",
            output=str(self.options.output),
            model=predictor.name,
            version=predictor.version,
            engine="server" if self.options.server else self.options.engine,
            rows=sum(e.rows for e in done),
            errors=sum(e.errors for e in manifest.shards),
            shards=len(manifest.shards),
            shards_run=len(results),
            rows_run=rows_run,
            elapsed_s=round(time.monotonic() - started, 3),
            processing_s=round(processing_s, 3),
            rows_per_s=round(rows_run / processing_s, 1) if processing_s > 0 else 0.0,
            batches=latency.total,
            batch_p50_ms=_round(latency.percentile_ms(50)),
            batch_p99_ms=_round(latency.percentile_ms(99)),
            batch_size=self.options.batch_size,
        )

    def _note(self, message: str) -> None:
        if self.progress is not None:
            self.progress.note(message)


def _check_csv_keep(columns: Any) -> None:
    import pyarrow as pa

    for name, kind in zip(columns.keep, columns.keep_types, strict=True):
        if pa.types.is_nested(kind):
            raise BatchError(
                f"kept column '{name}' holds {kind}: CSV cannot; use --format parquet or jsonl"
            )


def _require(module: str, extra: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise BatchError(f"this needs {module}: pip install 'modelserve[{extra}]'")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _ignore(rows: int) -> None:
    return None
