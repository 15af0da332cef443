"""``modelserve validate MODEL_DIR [--version N]``: the validation gate of model.yaml, offline
(docs/validation.md). Exit code 0 when the gate passed, 1 when it failed, 2 for a mistake in the
command."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "validate",
        help="run a model's validation gate (model.yaml's 'validation') on its held-out data",
        description="Load a version as the server does and run the validation gate of its "
        "model.yaml on the held-out data. Exit code 1 when a threshold fails.",
    )
    parser.add_argument("model_dir", type=Path, metavar="MODEL_DIR", help="the model's folder")
    parser.add_argument(
        "--version",
        default=None,
        metavar="N",
        help="the version to validate (default: the newest the version policy selects)",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="N",
        help="the version the change thresholds compare with (default: compare_to's "
        "version:N, else the newest older version)",
    )
    parser.add_argument(
        "--accelerate",
        choices=["none", "onnx"],
        default="none",
        help="the server default to assume for accelerate (model.yaml's key wins)",
    )
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    parser.add_argument(
        "--out", type=Path, default=None, metavar="FILE", help="also write the report there"
    )
    parser.set_defaults(run=run_validate)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def run_validate(args: argparse.Namespace) -> int:
    from modelserve.cli.main import CommandError
    from modelserve.cli.output import print_table
    from modelserve.cli.progress import progress
    from modelserve.offline.validate import ValidateError, ValidateOptions, validate_model
    from modelserve.runtimes.registry import RuntimeRegistry

    for flag in ("version", "baseline"):
        value = getattr(args, flag)
        if value is not None and (not value.isdigit() or value.startswith("0")):
            raise CommandError(f"--{flag} {value}: expected a version number (1, 2, ...)")
    options = ValidateOptions(args.model_dir, args.version, args.baseline, args.accelerate)
    try:
        with progress("validate") as step:
            step(f"loading {args.model_dir.name} and running its gate")
            result = validate_model(options, RuntimeRegistry())
    except ValidateError as exc:
        raise CommandError(str(exc)) from None
    report = result.report
    document = report.to_dict()
    if args.out is not None:
        try:
            args.out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot write {args.out}: {exc}") from None
    if args.json:
        print(json.dumps(document, indent=2))
        return 0 if report.passed else 1
    rows = [
        (
            check.metric,
            check.threshold,
            _fmt(check.limit),
            _fmt(check.value),
            _fmt(check.bound),
            _fmt(check.baseline),
            "yes" if check.passed else "NO",
        )
        for check in report.checks
    ]
    title = f"validation of {args.model_dir.name} version {result.version} on {report.rows} rows"
    headers = ("metric", "threshold", "limit", "value", "bound", "baseline", "passed")
    print_table(title, headers, rows)
    for note in report.notes:
        print(f"note: {note}")
    if report.passed:
        print(f"passed (baseline: version {result.baseline or '-'})")
        return 0
    print("FAILED: " + "; ".join(report.failures))
    return 1
