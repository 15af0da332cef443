"""What offline commands print: a progress bar and tables with rich on a terminal, plain lines
otherwise (logs, pipes, CI). rich is imported only when there is a terminal to draw on."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

__all__ = ["print_table", "progress"]


def _rich_console(stderr: bool) -> Any | None:
    stream = sys.stderr if stderr else sys.stdout
    if not stream.isatty():
        return None
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(stderr=stderr)


@contextmanager
def progress(title: str) -> Iterator[Callable[[str], None]]:
    """A callback that reports each step: a live bar on a terminal (stderr); nothing otherwise,
    so that a pipe or a log gets only the result (or the one-line error)."""
    console = _rich_console(stderr=True)
    if console is None:

        def silent(step: str) -> None:
            return None

        yield silent
        return
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    bar = Progress(
        SpinnerColumn(),
        TextColumn(f"[bold]{title}[/bold]"),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    with bar:
        task = bar.add_task("starting", total=None)

        def live(step: str) -> None:
            bar.update(task, description=step)

        yield live


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table on stdout: drawn by rich on a terminal, tab-separated lines otherwise."""
    console = _rich_console(stderr=False)
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
