"""Command line: ``modelserve serve <repo>``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from modelserve.config import Settings
from modelserve.server import Server

log = logging.getLogger("modelserve.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelserve", description="Serve models over KServe V2.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a model repository")
    serve.add_argument("model_repository", type=Path, help="folder of <model>/<version>/ dirs")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--http-port", type=int, default=8000, help="HTTP port (0 = any free)")
    serve.add_argument(
        "--max-request-bytes", type=int, default=64 * 1024 * 1024, help="largest request body"
    )
    serve.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    return parser


async def _serve(settings: Settings) -> None:
    server = Server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    await stop.wait()
    log.info("shutting down")
    await server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
            max_request_bytes=args.max_request_bytes,
            log_level=args.log_level,
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
