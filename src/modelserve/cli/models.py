"""``modelserve models list|load|unload|metadata``: the repository of a running server, through
modelserve.client."""

from __future__ import annotations

import argparse
from typing import Any

from modelserve.cli.client_options import add_flags

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "models",
        help="list, load, unload a server's models; show a model's inputs and outputs",
        description="The models of a running server. Every flag is also a MODELSERVE_* "
        "environment variable (docs/cli.md).",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every model version and its state")
    add_flags(listing, "ready")
    listing.set_defaults(run=run_list)
    load = actions.add_parser(
        "load", help="load or reload a model (the server runs with --model-control-mode explicit)"
    )
    load.add_argument("model", metavar="MODEL")
    add_flags(load, "model_config")
    load.set_defaults(run=run_load)
    unload = actions.add_parser("unload", help="unload a model")
    unload.add_argument("model", metavar="MODEL")
    add_flags(unload)
    unload.set_defaults(run=run_unload)
    metadata = actions.add_parser("metadata", help="a model's inputs, outputs and versions")
    metadata.add_argument("model", metavar="MODEL")
    add_flags(metadata, "version")
    metadata.set_defaults(run=run_metadata)


def run_list(args: argparse.Namespace) -> int:
    from modelserve.cli.client_options import connect, failures, value
    from modelserve.cli.output import Report, emit

    fmt = value(args, "output")
    with failures(), connect(args) as client:
        rows = client.models(ready_only=value(args, "ready"))
    doc = [
        {"name": r.name, "version": r.version, "state": r.state, "reason": r.reason} for r in rows
    ]
    table = [[r.name, r.version, r.state, r.reason] for r in rows]
    emit(Report(doc, ["model", "version", "state", "reason"], table), fmt)
    return 0


def _done(args: argparse.Namespace, what: str) -> int:
    from modelserve.cli.client_options import value
    from modelserve.cli.output import Report, emit

    doc = {"model": args.model, what: True}
    emit(Report(doc, ["model", "state"], [[args.model, what]]), value(args, "output"))
    return 0


def run_load(args: argparse.Namespace) -> int:
    from modelserve.cli.client_options import connect, failures, value
    from modelserve.cli.datafiles import read_document

    path = value(args, "model_config")
    config = read_document(path) if path else None
    with failures(), connect(args) as client:
        client.load(args.model, config)
    return _done(args, "loaded")


def run_unload(args: argparse.Namespace) -> int:
    from modelserve.cli.client_options import connect, failures

    with failures(), connect(args) as client:
        client.unload(args.model)
    return _done(args, "unloaded")


def run_metadata(args: argparse.Namespace) -> int:
    from modelserve.cli.client_options import connect, failures, value
    from modelserve.cli.output import Report, emit

    fmt = value(args, "output")
    with failures(), connect(args) as client:
        meta = client.metadata(args.model, value(args, "version"))

    def tensors(specs: Any) -> list[dict[str, Any]]:
        return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in specs]

    doc = {
        "name": meta.name,
        "versions": list(meta.versions),
        "platform": meta.platform,
        "inputs": tensors(meta.inputs),
        "outputs": tensors(meta.outputs),
    }
    table = [
        [kind, t.name, t.datatype, list(t.shape)]
        for kind, specs in (("input", meta.inputs), ("output", meta.outputs))
        for t in specs
    ]
    caption = f"{meta.name}: {meta.platform}, versions {', '.join(meta.versions) or '-'}"
    emit(Report(doc, ["", "name", "datatype", "shape"], table, caption), fmt)
    return 0
