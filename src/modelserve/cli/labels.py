"""``modelserve labels send MODEL FILE``: the true labels of earlier predictions, by request id
(the monitoring API's ``POST /v2/models/{model}/labels``)."""

from __future__ import annotations

import argparse
from typing import Any

from modelserve.cli.client_options import add_flags

__all__ = ["register"]


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
        answer = client.send_labels(args.model, ids, labels)
    row = [[args.model, len(ids), answer.get("accepted"), answer.get("unknown")]]
    emit(Report(answer, ["model", "sent", "accepted", "unknown"], row), fmt)
    return 0
