"""``modelserve convert ARTIFACT --sample DATA``: convert a model to ONNX with a parity report
(docs/convert.md). Exit code 0 when the parity gate passed, 1 when it failed, 2 for a mistake in
the command."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "convert",
        help="convert a scikit-learn, XGBoost or LightGBM model to ONNX, with a parity report",
        description="Convert a model to ONNX, run the native model and the ONNX graph on the "
        "sample rows, and write conversion_report.json beside the output. Exit code 1 when "
        "they disagree beyond the tolerances.",
    )
    parser.add_argument(
        "artifact",
        type=Path,
        metavar="ARTIFACT",
        help="the model file (.skops, .joblib, .ubj, .xgb.json, .lgb.txt) or its version folder; "
        "the model.yaml of its model folder is honoured",
    )
    parser.add_argument(
        "--sample",
        type=Path,
        required=True,
        metavar="DATA",
        help="rows to compare on: .csv, .parquet, .npz, .npy or .jsonl",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("model.onnx"), help="ONNX file to write (model.onnx)"
    )
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (converter default)")
    parser.add_argument(
        "--optimize", action="store_true", help="save onnxruntime's fully optimised graph"
    )
    parser.add_argument(
        "--quantize",
        choices=["int8"],
        default=None,
        help="dynamic int8 quantisation of a network's weights",
    )
    parser.add_argument(
        "--trust",
        action="store_true",
        help="allow a pickle artifact (it can run arbitrary code when loaded)",
    )
    parser.add_argument(
        "--runtime",
        default=None,
        help="the artifact's runtime when its name does not tell (sklearn, xgboost, lightgbm)",
    )
    parser.add_argument(
        "--label", default=None, metavar="COLUMN", help="a column of DATA that is not a feature"
    )
    parser.add_argument(
        "--precision",
        choices=["auto", "float32", "float64"],
        default="auto",
        help="auto: float32, and float64 for tree models whose float32 graph disagrees",
    )
    parser.add_argument("--rtol", type=float, default=1e-5, help="relative tolerance (1e-5)")
    parser.add_argument("--atol", type=float, default=1.5e-5, help="absolute tolerance (1.5e-5)")
    parser.add_argument(
        "--force", action="store_true", help="write the ONNX file even when the gate fails"
    )
    parser.set_defaults(run=run_convert)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "-"
    return str(value)


def run_convert(args: argparse.Namespace) -> int:
    from modelserve.cli.main import CommandError
    from modelserve.cli.output import print_table
    from modelserve.cli.progress import progress
    from modelserve.offline.convert import ConvertOptions, OfflineError, convert_artifact
    from modelserve.runtimes.registry import RuntimeRegistry
    from modelserve.serving.conversion import Tolerance

    if args.rtol < 0 or args.atol < 0:
        raise CommandError("--rtol and --atol must be >= 0")
    if args.opset is not None and not 7 <= args.opset <= 30:
        raise CommandError(f"--opset {args.opset}: expected a number between 7 and 30")
    options = ConvertOptions(
        artifact=args.artifact,
        sample=args.sample,
        out=args.out,
        opset=args.opset,
        optimize=args.optimize,
        quantize=args.quantize,
        trust=args.trust,
        runtime=args.runtime,
        label=args.label,
        precision=args.precision,
        tolerance=Tolerance(rtol=args.rtol, atol=args.atol),
        force=args.force,
    )
    try:
        with progress("convert") as step:
            result = convert_artifact(options, RuntimeRegistry(), step)
    except OfflineError as exc:
        raise CommandError(str(exc)) from None
    report = result.report
    rows = [
        ("converter", report.converter),
        ("versions", ", ".join(f"{k} {v}" for k, v in report.versions.items()) or "-"),
        ("rows", _fmt(report.rows)),
        ("max_abs_err", _fmt(report.max_abs_err)),
        ("max_rel_err", _fmt(report.max_rel_err)),
        ("mismatch_rate", _fmt(report.mismatch_rate)),
        ("label_agreement", _fmt(report.label_agreement)),
        ("passed", "yes" if report.passed else "NO"),
        *(("reason", reason) for reason in report.reasons),
    ]
    print_table(f"conversion of {args.artifact.name}", ("", "value"), rows)
    if result.model_path is not None:
        print(f"wrote {result.model_path} and {result.report_path}")
    else:
        print(f"wrote {result.report_path}; no ONNX file (the parity gate failed)")
    return 0 if report.passed else 1
