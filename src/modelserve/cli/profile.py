"""``modelserve profile DATA --model-dir DIR``: the reference profile input drift is measured
against (docs/monitoring.md), written to ``DIR/reference_profile.json``.

A model (or version) folder with that file and a ``monitoring:`` key in model.yaml is tested
for drift against it, without the training data in the repository.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "profile",
        help="profile training rows (CSV, Parquet, NPZ, JSONL) as a model's drift reference",
        description="Profile the rows of DATA (per feature: type, quantiles, category "
        "frequencies, null rate, min/max) into DIR/reference_profile.json, the reference a "
        "monitored model's input drift is tested against.",
    )
    parser.add_argument("data", type=Path, metavar="DATA", help="CSV, Parquet, NPZ or JSONL")
    parser.add_argument(
        "--model-dir",
        type=Path,
        required=True,
        metavar="DIR",
        help="the model folder (or one version's folder) to write reference_profile.json to",
    )
    parser.add_argument(
        "--columns",
        metavar="A,B,…",
        help="the columns that are features, in the model's input order (default: all)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from modelserve.cli.main import CommandError
    from modelserve.monitoring.profile import PROFILE_FILE, build_profile

    if not args.data.is_file():
        raise CommandError(f"{args.data}: no such file")
    if not args.model_dir.is_dir():
        raise CommandError(f"{args.model_dir}: no such folder")
    names = [c.strip() for c in args.columns.split(",")] if args.columns else None
    try:
        profile = build_profile(args.data, names)
    except (OSError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    target = args.model_dir / PROFILE_FILE
    profile.save(target)
    kinds = [f"{f.name} ({f.kind})" for f in profile.features]
    print(f"{target}: {profile.rows} rows, {len(kinds)} features: {', '.join(kinds)}")
    sys.stdout.flush()
    return 0
