"""``modelserve monitor MODEL``: predictions, labels, accuracy and drift per version, from the
monitoring API (``GET /v2/models/{model}/monitoring``), as tables."""

from __future__ import annotations

import argparse
from typing import Any

from modelserve.cli.client_options import add_flags

__all__ = ["monitoring_report", "register"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "monitor",
        help="a model's predictions, label coverage, accuracy and drift per version",
        description="The monitoring API of a running server (docs/monitoring.md). Every flag is "
        "also a MODELSERVE_* environment variable (docs/cli.md).",
    )
    parser.add_argument("model", metavar="MODEL")
    add_flags(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from modelserve.cli.client_options import connect, failures, value
    from modelserve.cli.output import emit

    fmt = value(args, "output")
    with failures(), connect(args) as client:
        doc = client.monitoring(args.model)
    emit(monitoring_report(doc), fmt)
    return 0


def monitoring_report(doc: dict[str, Any]) -> Any:
    """One row per version (the ``all`` window's metrics), then one row per drifting feature."""
    from modelserve.cli.output import Report

    versions = doc.get("versions") or {}
    metric_names: list[str] = []
    for entry in versions.values():
        for name in (entry.get("metrics") or {}).get("all") or {}:
            if name not in metric_names and name != "labelled":  # a column already
                metric_names.append(name)
    rows = []
    features = []
    for version, entry in versions.items():
        overall = (entry.get("metrics") or {}).get("all") or {}
        drift = entry.get("drift") or {}
        rows.append(
            [
                version,
                entry.get("predictions"),
                entry.get("labelled"),
                entry.get("label_coverage"),
                *(overall.get(name) for name in metric_names),
                drift.get("drifted"),
            ]
        )
        for feature, figures in (drift.get("features") or {}).items():
            features.append(
                [
                    version,
                    feature,
                    figures.get("method"),
                    figures.get("value"),
                    figures.get("threshold"),
                    figures.get("psi"),
                    figures.get("drifted"),
                ]
            )
    columns = ["version", "predictions", "labelled", "label_coverage", *metric_names, "drifted"]
    report = Report(doc, columns, rows, title=f"{doc.get('model', '')}: monitoring")
    if features:
        report.sections.append(
            Report(
                doc,
                ["version", "feature", "method", "value", "threshold", "psi", "drifted"],
                features,
                title="drift by feature",
            )
        )
    return report
