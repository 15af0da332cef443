"""``modelserve experiment start|status|promote|rollback|stop MODEL``: a model's traffic
experiment, through the experiments API (``GET/PUT/DELETE /v2/models/{model}/experiment``)."""

from __future__ import annotations

import argparse
from typing import Any

from modelserve.cli.client_options import add_flags

__all__ = ["experiment_report", "register"]

ACTIONS = {
    "status": "the experiment's state, weights, arms and decisions",
    "promote": "promote the candidate now (docs/experiments.md)",
    "rollback": "roll back to the baseline now (docs/experiments.md)",
    "stop": "stop the experiment",
}


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "experiment",
        help="start, watch, promote, roll back or stop a model's traffic experiment",
        description="Traffic experiments (docs/experiments.md). Every flag is also a "
        "MODELSERVE_* environment variable (docs/cli.md).",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    start = actions.add_parser("start", help="start an experiment from --file")
    start.add_argument("model", metavar="MODEL")
    add_flags(start, "file")
    start.set_defaults(run=run)
    for action, text in ACTIONS.items():
        command = actions.add_parser(action, help=text)
        command.add_argument("model", metavar="MODEL")
        add_flags(command)
        command.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from modelserve.cli.client_options import connect, failures, value
    from modelserve.cli.datafiles import read_document
    from modelserve.cli.main import CommandError
    from modelserve.cli.output import emit

    fmt = value(args, "output")
    spec = None
    if args.action == "start":
        path = value(args, "file")
        if path is None:
            raise CommandError("give the experiment with --file FILE (YAML or JSON)")
        spec = read_document(path, "experiment")
    with failures(), connect(args) as client:
        if args.action == "start":
            doc = client.experiment(args.model, spec)
        elif args.action == "status":
            doc = client.experiment(args.model)
        else:
            doc = client.experiment(args.model, action=args.action)
    emit(experiment_report(args.model, doc), fmt)
    return 0


def experiment_report(model: str, doc: dict[str, Any]) -> Any:
    """The state and weights, one row per arm, then the decisions taken."""
    from modelserve.cli.output import Report

    weights = doc.get("weights") or {}
    arms = doc.get("arms") or {}
    versions = list(dict.fromkeys([*weights, *arms]))
    rows = [
        [
            version,
            weights.get(version),
            (arms.get(version) or {}).get("requests"),
            (arms.get(version) or {}).get("errors"),
            (arms.get(version) or {}).get("p99_ms"),
            (arms.get(version) or {}).get("accuracy"),
        ]
        for version in versions
    ]
    title = f"{model}: experiment {doc.get('state', '?')}"
    if doc.get("step") is not None:
        title += f", step {doc['step']}"
    report = Report(
        doc, ["version", "weight", "requests", "errors", "p99_ms", "accuracy"], rows, title=title
    )
    history = doc.get("history") or []
    if history:
        report.sections.append(
            Report(
                doc,
                ["time", "verdict", "reason"],
                [
                    [h.get("time_iso", h.get("time")), h.get("verdict"), h.get("reason")]
                    for h in history
                ],
                title="decisions",
            )
        )
    return report
