"""``modelserve labels send MODEL FILE``: the true labels of earlier predictions, by request id
(the monitoring API's ``POST /v2/models/{model}/labels``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from modelserve.cli.client_options import add_flags

__all__ = ["LABELS_PER_REQUEST", "register", "send_in_parts"]

LABELS_PER_REQUEST = 10_000


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "labels",
        help="send the true labels of earlier predictions (monitoring)",
        description="Labels for live accuracy (docs/monitoring.md). Every flag is also a "
        "MODELSERVE_* environment variable (docs/cli.md).",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    send = actions.add_parser(
        "send",
        help="send FILE's labels: CSV with id,label columns, a JSON list of {id, label}, or "
        "JSON lines; - for stdin",
    )
    send.add_argument("model", metavar="MODEL")
    send.add_argument("file", metavar="FILE")
    add_flags(send)
    send.set_defaults(run=run_send)


def run_send(args: argparse.Namespace) -> int:
    from modelserve.cli.client_options import connect, failures, value
    from modelserve.cli.datafiles import read_labels
    from modelserve.cli.output import Report, emit

    fmt = value(args, "output")
    ids, labels = read_labels(args.file)
    with failures(), connect(args) as client:
        answer = send_in_parts(client, args.model, ids, labels, LABELS_PER_REQUEST)
    row = [[args.model, len(ids), answer["accepted"], answer["unknown"]]]
    emit(Report(answer, ["model", "sent", "accepted", "unknown"], row), fmt)
    return 0


def send_in_parts(
    client: Any, model: str, ids: list[str], labels: list[Any], per_request: int
) -> dict[str, int]:
    """``ids`` and ``labels`` in requests of ``per_request`` labels (the server stores each
    request at once; a file of a million labels is not one 60 MB body), a progress bar on a
    terminal when there are several; the answers added up. A request that fails ends the
    command with one line saying how many labels the server had already taken."""
    from modelserve.cli.main import CommandError
    from modelserve.client import ClientError, InvalidInputError

    total = {"accepted": 0, "unknown": 0}
    parts = range(0, len(ids), per_request)
    with _progress(len(ids) if len(parts) > 1 else 0) as advance:
        for start in parts:
            stop = min(start + per_request, len(ids))
            try:
                answer = client.send_labels(model, ids[start:stop], labels[start:stop])
            except ClientError as exc:
                if not start:
                    raise
                raise CommandError(
                    f"{exc.message} (labels {start + 1:,}-{stop:,} of {len(ids):,}; the "
                    f"{start:,} before them were sent: {total['accepted']:,} accepted, "
                    f"{total['unknown']:,} unknown)",
                    2 if isinstance(exc, InvalidInputError) else 1,
                ) from None
            for key in total:
                total[key] += int(answer.get(key) or 0)
            advance(stop - start)
    return total


@contextmanager
def _progress(total: int) -> Iterator[Callable[[int], None]]:
    """A rich bar on stderr for ``total`` labels when stderr is a terminal (and ``total``)."""
    import sys

    if not total or not sys.stderr.isatty():
        yield lambda done: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(
        TextColumn("labels"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("labels", total=total)
    with bar:
        yield lambda done: bar.advance(task, done)
