"""``modelserve predict MODEL --input FILE``: one inference with modelserve.client, printed as a
table (one row per input row, an output of k values per row as k columns), JSON or CSV."""

from __future__ import annotations

import argparse
from typing import Any

from modelserve.cli.client_options import add_flags

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "predict",
        help="run a model on a file of inputs (JSON, CSV, Parquet, numpy) and print its answer",
        description="Run MODEL on the rows of --input and print the outputs, one row per input "
        "row. Every flag is also a MODELSERVE_* environment variable (docs/cli.md).",
    )
    parser.add_argument("model", metavar="MODEL", help="the model's name")
    add_flags(parser, "input", "version", "outputs", "id")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from modelserve.cli.client_options import connect, failures, value
    from modelserve.cli.datafiles import read_input
    from modelserve.cli.main import CommandError
    from modelserve.cli.output import emit

    source = value(args, "input")
    if source is None:
        raise CommandError("give the data with --input FILE (or - for stdin)")
    data = read_input(source)
    names = value(args, "outputs")
    outputs = [n.strip() for n in names.split(",") if n.strip()] if names else None
    fmt = value(args, "output")
    with failures(), connect(args) as client:
        result = client.predict(
            args.model, data, version=value(args, "version"), outputs=outputs, id=value(args, "id")
        )
    emit(prediction_report(result), fmt)
    return 0


def prediction_report(result: Any) -> Any:
    """The report of a predict result of any kind (its ``.outputs`` are the arrays)."""
    from modelserve.cli.output import Report
    from modelserve.client.tables import output_columns

    outputs = result.outputs
    caption = f"{result.model_name} version {result.model_version}, request id {result.id}"
    doc = {
        "model_name": result.model_name,
        "model_version": result.model_version,
        "id": result.id,
        "outputs": [
            {"name": name, "datatype": _datatype(array), "shape": list(array.shape),
             "data": _jsonable(array)}
            for name, array in outputs.items()
        ],
    }  # fmt: skip
    rows = {array.shape[0] if array.ndim else -1 for array in outputs.values()}
    if len(rows) == 1 and (count := rows.pop()) > 0:
        columns = output_columns(outputs, count)
        table = [[columns[name][i] for name in columns] for i in range(count)]
        return Report(doc, list(columns), table, caption)
    table = [[name, list(array.shape), _jsonable(array)] for name, array in outputs.items()]
    return Report(doc, ["output", "shape", "data"], table, caption)


def _datatype(array: Any) -> str:
    from modelserve.codecs.tensors import v2_datatype

    return v2_datatype(array.dtype)


def _jsonable(array: Any) -> Any:
    if array.dtype == object:
        return (
            [
                v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else v
                for v in array.reshape(-1).tolist()
            ]
            if array.ndim <= 1
            else [_jsonable(row) for row in array]
        )
    return array.tolist()
