"""What the commands print as their result: tables and values, drawn by rich on a terminal
and plain text otherwise (pipes, logs, CI).

The client commands (``emit``): ``--output table`` is a rich table on a terminal and plain
aligned text otherwise (for grep, awk and logs), ``json`` the whole answer, ``csv`` the table's
rows with a header. A caption (which model and version answered, the request id) goes under a
rich table, and to stderr in plain text, so that stdout holds only the rows.

The offline commands (convert, validate: ``print_table``): a rich table on a terminal,
tab-separated lines otherwise. Their progress bar is cli/progress.py."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any

__all__ = ["Report", "cell", "emit", "print_table", "terminal_console"]


@dataclass(slots=True)
class Report:
    """What a command prints: ``doc`` for json; ``columns`` and ``rows`` for table and csv."""

    doc: Any
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    caption: str = ""
    title: str = ""
    sections: list[Report] = field(default_factory=list)
    """Further tables printed after this one (not in csv)."""


def cell(value: Any, exact: bool = False) -> str:
    """One value as text: None as empty, lists as JSON; floats with 6 significant digits for
    reading, or (``exact``, for CSV) the shortest text that reads back to the same value."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=_jsonable)
    if getattr(value, "ndim", None) == 0:  # a numpy scalar: str() is its shortest exact form
        if exact or value.dtype.kind != "f":
            return str(value.item()) if value.dtype.kind in "biuO" else str(value)
        value = float(value)
    if isinstance(value, float):
        return repr(value) if exact else f"{value:.6g}"
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return cell(tolist(), exact)
    return str(value)


def _plain(report: Report, out: IO[str], err: IO[str]) -> None:
    if report.title:
        print(report.title, file=out)
    texts = [[cell(v) for v in row] for row in report.rows]
    widths = [len(c) for c in report.columns]
    for row in texts:
        widths = [max(w, len(t)) for w, t in zip(widths, row, strict=False)]
    lines = [list(report.columns), *texts]
    for line in lines:
        print("  ".join(t.ljust(w) for t, w in zip(line, widths, strict=False)).rstrip(), file=out)
    if report.caption:
        print(report.caption, file=err)


def _rich(report: Report, console: Any) -> None:
    from rich.table import Table

    table = Table(title=report.title or None, caption=report.caption or None)
    for column in report.columns:
        table.add_column(column, overflow="fold")
    for row in report.rows:
        table.add_row(*(cell(v) for v in row))
    console.print(table)


def emit(report: Report, fmt: str, out: IO[str] | None = None, err: IO[str] | None = None) -> None:
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    if fmt == "json":
        json.dump(report.doc, out, indent=2, default=_jsonable)
        out.write("\n")
        return
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(report.columns)
        writer.writerows([cell(v, exact=True) for v in row] for row in report.rows)
        if report.caption:
            print(report.caption, file=err)
        return
    from rich.console import Console

    console = Console(file=out)
    for position, part in enumerate((report, *report.sections)):
        if console.is_terminal:
            _rich(part, console)
        else:
            if position:
                print(file=out)
            _plain(part, out, err)


def _jsonable(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


# ---- the offline commands' tables -------------------------------------------------------------


def terminal_console(stream: IO[str]) -> Any | None:
    """A rich console drawing on ``stream`` when it is a terminal; None otherwise (or without
    rich), and then rich is not imported."""
    if not stream.isatty():
        return None
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(stderr=stream is sys.stderr)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table on stdout: drawn by rich on a terminal, tab-separated lines otherwise."""
    console = terminal_console(sys.stdout)
    if console is None:
        print(title)
        print("\t".join(headers))
        for row in rows:
            print("\t".join(row))
        return
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for header in headers:
        table.add_column(header)
    for row in rows:
        table.add_row(*row)
    console.print(table)
