"""``modelserve batch run``: a model repository's model over files (docs/batch.md).

Progress goes to stderr: a rich bar (rows, rows/s, ETA) on a terminal, a plain line every
``PLAIN_EVERY_S`` seconds otherwise. The summary goes to stdout: a table on a terminal, ``key:
value`` lines otherwise, JSON with ``--json``. Exit status: 0 complete, 1 the job failed (too
many bad rows, failed shards; a rerun resumes), 2 it could not start.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["register"]

PLAIN_EVERY_S = 10.0


def _columns(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"'{value}' is not a comma-separated list of columns")
    return names


def _fraction(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a number") from None


def register(sub: Any) -> None:
    batch = sub.add_parser(
        "batch",
        help="run a model over files: Parquet, CSV, JSONL (resumable, local or Dask)",
        description="Batch inference over files with the server's runtimes and model.yaml.",
    )
    commands = batch.add_subparsers(dest="batch_command", required=True, metavar="COMMAND")
    run_parser = commands.add_parser(
        "run",
        help="run a model over input files into a folder of part files",
        description="Run a model over Parquet, CSV or JSONL files into DIR: one part file per "
        "shard, input order kept, bad rows in DIR/_errors.jsonl, DIR/_manifest.json and "
        "DIR/_SUCCESS at the end. Running the same command again resumes.",
    )
    add = run_parser.add_argument
    add("--repository", type=Path, metavar="REPO", help="the model repository")
    add("--model", required=True, metavar="NAME[:VERSION]", help="model, optionally a version")
    add(
        "--input",
        dest="inputs",
        required=True,
        nargs="+",
        action="extend",
        metavar="PATH",
        help="files, globs ('data/*.parquet') or folders; .parquet, .csv, .jsonl",
    )
    add("--output", required=True, type=Path, metavar="DIR", help="folder for the results")
    add(
        "--format",
        default="parquet",
        choices=("parquet", "csv", "jsonl"),
        help="part file format (default parquet)",
    )
    add(
        "--batch-size",
        type=int,
        default=1024,
        metavar="N",
        help="rows per model call (default 1024, at most the model's max_batch_size)",
    )
    add(
        "--engine",
        default="local",
        choices=("local", "dask"),
        help="local: this process; dask: a Dask cluster (default local)",
    )
    add(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="--engine dask: an existing Dask scheduler (default: a local cluster)",
    )
    add(
        "--workers",
        type=int,
        metavar="N",
        help="--engine dask: worker processes of the local cluster (default: the cores); "
        "--server: requests in flight (default 4)",
    )
    add(
        "--server",
        metavar="URL",
        help="send the rows to a running server (host:port, http://, grpc://) instead of "
        "loading the model from --repository",
    )
    add(
        "--keep-columns",
        type=_columns,
        action="extend",
        default=[],
        metavar="A,B",
        help="input columns copied to the output beside the predictions",
    )
    add(
        "--features",
        action="append",
        default=[],
        metavar="[INPUT=]A,B,C",
        help="columns that fill a 2-D input, in order (repeat per input)",
    )
    add(
        "--max-error-rate",
        type=_fraction,
        default=0.01,
        metavar="RATE",
        help="fail when more than this fraction of rows is bad (default 0.01)",
    )
    add(
        "--shard-rows",
        type=int,
        default=100_000,
        metavar="N",
        help="rows per shard and part file (default 100000)",
    )
    add(
        "--overwrite",
        action="store_true",
        help="discard what DIR holds from an earlier job and start again",
    )
    add("--json", action="store_true", help="print the summary as JSON")
    run_parser.set_defaults(run=run)


def _features(values: list[str]) -> dict[str, tuple[str, ...]]:
    from modelserve.cli.main import CommandError

    features: dict[str, tuple[str, ...]] = {}
    for value in values:
        name, sep, columns = value.rpartition("=")
        names = tuple(c.strip() for c in columns.split(","))
        if not all(names) or (sep and not name):
            raise CommandError(f"--features {value}: give columns as a,b,c or INPUT=a,b,c")
        if name in features:
            raise CommandError(f"--features given twice for {name or 'the input'}")
        features[name] = names
    return features


def _configure_logging(engine: str) -> None:
    logging.basicConfig(level=logging.WARNING, format="modelserve: %(name)s: %(message)s")
    # A version that fails to load is reported once, by the job, as one line.
    logging.getLogger("modelserve.serving.repository").setLevel(logging.CRITICAL)
    if engine == "dask":
        import importlib.util

        if importlib.util.find_spec("distributed") is not None:
            import distributed  # noqa: F401 - sets its loggers up on import; tuned below

            logging.getLogger("distributed").setLevel(logging.WARNING)


def run(args: argparse.Namespace) -> int:
    from modelserve.cli.main import CommandError
    from modelserve.offline.batch.errors import BatchError, JobFailed
    from modelserve.offline.batch.job import BatchJob, JobOptions

    _configure_logging(args.engine)
    options = JobOptions(
        model=args.model,
        inputs=tuple(args.inputs),
        output=args.output,
        repository=args.repository,
        format=args.format,
        batch_size=args.batch_size,
        engine=args.engine,
        scheduler=args.scheduler,
        workers=args.workers,
        server=args.server,
        keep_columns=tuple(args.keep_columns),
        features=_features(args.features),
        max_error_rate=args.max_error_rate,
        shard_rows=args.shard_rows,
        overwrite=args.overwrite,
    )
    progress = _progress()
    try:
        summary = BatchJob(options, progress).run()
    except JobFailed as exc:
        progress.finish()
        if exc.summary is not None:
            _print_summary(exc.summary, args.json)
        print(f"modelserve: {exc}", file=sys.stderr)
        return 1
    except BatchError as exc:
        progress.finish()
        raise CommandError(str(exc)) from None
    _print_summary(summary, args.json)
    return 0


# ---- progress ---------------------------------------------------------------------------------


def _progress() -> RichProgress | PlainProgress:
    import importlib.util

    if sys.stderr.isatty() and importlib.util.find_spec("rich") is not None:
        return RichProgress()
    return PlainProgress()


def _eta(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class PlainProgress:
    """A line on stderr every ``every`` seconds: rows done, rows/s, ETA."""

    def __init__(self, every: float = PLAIN_EVERY_S) -> None:
        self.every = every
        self.total = 0
        self.done = 0
        self._start_done = 0
        self._started = 0.0
        self._last = 0.0
        self._lock = threading.Lock()
        self._active = False

    def start(self, total_rows: int, done_rows: int) -> None:
        self.total, self.done, self._start_done = total_rows, done_rows, done_rows
        self._started = self._last = time.monotonic()
        self._active = True
        self._line()

    def advance(self, rows: int) -> None:
        with self._lock:
            self.done += rows
            now = time.monotonic()
            if now - self._last < self.every:
                return
            self._last = now
        self._line()

    def note(self, message: str) -> None:
        print(f"batch: {message}", file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self._active:
            self._active = False
            self._line()

    def _line(self) -> None:
        elapsed = time.monotonic() - self._started
        run = self.done - self._start_done
        rate = run / elapsed if elapsed > 0 else 0.0
        left = max(self.total - self.done, 0)
        share = 100.0 * self.done / self.total if self.total else 100.0
        eta = _eta(left / rate) if rate > 0 else "?"
        print(
            f"batch: {self.done:,}/{self.total:,} rows ({share:.1f}%), {rate:,.0f} rows/s, "
            f"ETA {eta}",
            file=sys.stderr,
            flush=True,
        )


class RichProgress:
    """A rich progress bar on stderr (a terminal)."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self._progress: Any = None
        self._task: Any = None

    def start(self, total_rows: int, done_rows: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        class Rate(ProgressColumn):
            def render(self, task: Any) -> Text:
                speed = task.speed
                return Text(f"{speed:,.0f} rows/s" if speed else "- rows/s")

        self._progress = Progress(
            TextColumn("batch"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows"),
            Rate(),
            TimeRemainingColumn(),
            console=self.console,
            speed_estimate_period=10.0,
        )
        self._task = self._progress.add_task("batch", total=total_rows, completed=done_rows)
        self._progress.start()

    def advance(self, rows: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, rows)

    def note(self, message: str) -> None:
        self.console.print(f"batch: {message}", highlight=False)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


# ---- summary ----------------------------------------------------------------------------------


def _summary_rows(summary: Any) -> list[tuple[str, str]]:
    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f} ms"

    return [
        ("status", summary.status),
        ("model", f"{summary.model} version {summary.version}"),
        ("engine", summary.engine),
        ("rows", f"{summary.rows:,}"),
        ("errors", f"{summary.errors:,}"),
        ("shards", f"{summary.shards} ({summary.shards_run} this run)"),
        ("rows/s", f"{summary.rows_per_s:,.0f} (this run: {summary.rows_run:,} rows)"),
        ("batch p50", ms(summary.batch_p50_ms)),
        ("batch p99", ms(summary.batch_p99_ms)),
        ("batches", f"{summary.batches:,} of up to {summary.batch_size} rows"),
        ("time", f"{summary.elapsed_s:.2f} s ({summary.processing_s:.2f} s processing)"),
        ("output", summary.output),
    ]


def _print_summary(summary: Any, as_json: bool) -> None:
    if as_json:
        import json

        print(json.dumps(summary.to_json(), indent=1))
        return
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(show_header=False, box=None)
        for key, value in _summary_rows(summary):
            table.add_row(key, value)
        Console().print(table)
        return
    for key, value in _summary_rows(summary):
        print(f"{key}: {value}")
