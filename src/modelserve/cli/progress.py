"""The progress bar of the long offline commands (convert, validate): a live rich bar on a
terminal (stderr), nothing otherwise (logs, pipes, CI get only the result or the one-line
error). rich is imported only when there is a terminal to draw on (cli/output.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from modelserve.cli.output import terminal_console

__all__ = ["progress"]


@contextmanager
def progress(title: str) -> Iterator[Callable[[str], None]]:
    """A callback that reports each step: a live bar on a terminal (stderr); nothing otherwise,
    so that a pipe or a log gets only the result (or the one-line error)."""
    console = terminal_console(sys.stderr)
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
