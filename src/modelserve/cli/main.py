"""``modelserve``: the entry point. Each command group lives in its own module, which adds its
sub-command with ``register(subparsers)`` and runs it with the function it sets as ``run``.

Command modules import only argparse-level code at the top; what a command needs (the server,
a framework, the client) is imported when it runs, so ``modelserve --help`` and the client
commands stay quick and never load the server side.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from modelserve.cli import (
    batch,
    convert,
    experiment,
    k8s,
    labels,
    models,
    monitor,
    predict,
    profile,
    repo,
    serve,
    tools,
    validate,
)

__all__ = ["CommandError", "build_parser", "main"]

COMMANDS: tuple[ModuleType, ...] = (
    serve,
    predict,
    models,
    labels,
    monitor,
    profile,
    experiment,
    batch,
    convert,
    k8s,
    repo,
    tools,
    validate,
)


class CommandError(Exception):
    """A command cannot go on: printed as one line ``modelserve: <message>``; the exit code is
    2 for a mistake in the command line or its input, 1 when the server (or the connection to
    it) failed the command."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelserve", description="Serve models over the Open Inference Protocol (KServe V2)."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(argv) if argv is not None else None
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except CommandError as exc:
        print(f"modelserve: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
