"""Command line: ``modelserve serve <repo>``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from modelserve.config import ModelConfig, Settings
from modelserve.server import Server

log = logging.getLogger("modelserve.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelserve", description="Serve models over KServe V2.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a model repository")
    serve.add_argument("model_repository", type=Path, help="folder of <model>/<version>/ dirs")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--http-port", type=int, default=8000, help="HTTP port (0 = any free)")
    serve.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (0 = any free)")
    serve.add_argument(
        "--max-request-bytes", type=int, default=64 * 1024 * 1024, help="largest request body"
    )
    serve.add_argument(
        "--grpc-max-message-bytes",
        type=int,
        default=64 * 1024 * 1024,
        help="largest gRPC message, received or sent",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--model-control-mode",
        default="none",
        choices=["none", "poll", "explicit"],
        help="none: load everything at start; poll: also apply changes on disk; explicit: "
        "the repository API may load and unload (Triton's meaning)",
    )
    serve.add_argument(
        "--repository-poll-secs", type=float, default=5.0, help="poll interval in poll mode"
    )
    serve.add_argument(
        "--load-model",
        action="append",
        dest="load_models",
        metavar="NAME",
        help="explicit mode: models to load at start (repeatable; '*' = all; default none)",
    )
    serve.add_argument(
        "--drain-delay-secs",
        type=float,
        default=0.0,
        help="on SIGTERM, keep serving this long while reporting not-ready",
    )
    serve.add_argument(
        "--shutdown-timeout-secs",
        type=float,
        default=30.0,
        help="on SIGTERM, the longest queued and running requests get to finish",
    )
    sub.add_parser("schema", help="print the JSON schema of model.yaml")
    return parser


def _startup_models(mode: str, names: list[str] | None) -> tuple[str, ...] | None:
    """Models to load at start (None = all): as Triton, explicit mode loads only the models
    named with --load-model ('*' = all), none without it."""
    if mode != "explicit" or (names is not None and "*" in names):
        return None
    return tuple(names or ())


async def _serve(settings: Settings) -> None:
    server = Server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    await stop.wait()
    log.info("shutting down (a second signal exits at once)")
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, os._exit, 1)
    await server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "schema":
        print(json.dumps(ModelConfig.model_json_schema(), indent=2))
        return 0
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = Settings(
            model_repository=args.model_repository,
            host=args.host,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            grpc_max_message_bytes=args.grpc_max_message_bytes,
            max_request_bytes=args.max_request_bytes,
            log_level=args.log_level,
            model_control_mode=args.model_control_mode,
            repository_poll_secs=args.repository_poll_secs,
            load_models=_startup_models(args.model_control_mode, args.load_models),
            drain_delay_s=args.drain_delay_secs,
            shutdown_timeout_s=args.shutdown_timeout_secs,
        )
    except ValidationError as exc:
        print(f"modelserve: invalid settings: {exc}", file=sys.stderr)
        return 2
    if not settings.model_repository.is_dir():
        print(f"modelserve: {settings.model_repository} is not a directory", file=sys.stderr)
        return 2
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(settings))
    else:
        uvloop.run(_serve(settings))
    return 0
