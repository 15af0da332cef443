"""``modelserve serve``: settings from flags, environment and server file (config/sources.py),
logging, then one server process on uvloop, or ``--workers N`` processes under the supervisor.
It owns the signals: the first SIGTERM/SIGINT drains (docs/lifecycle.md), a second exits at once.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelserve.cli.options import add_settings_flags, given_settings

if TYPE_CHECKING:
    from modelserve.config.settings import Settings

__all__ = ["register"]

log = logging.getLogger("modelserve.cli")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "serve",
        help="serve a model repository over REST and gRPC",
        description="Serve a model repository. Every option is also a MODELSERVE_* environment "
        "variable and a key of the --config file; a flag wins over the environment, which wins "
        "over the file ('modelserve schema --settings' lists them all).",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        default=os.environ.get("MODELSERVE_CONFIG"),
        help="server file (YAML) with settings by key, e.g. 'http_port: 9000' "
        "[env MODELSERVE_CONFIG]",
    )
    add_settings_flags(parser)
    parser.set_defaults(run=run)


def _settings(args: argparse.Namespace) -> Settings:
    from modelserve.cli.main import CommandError
    from modelserve.config.sources import SettingsError, build_settings
    from modelserve.security.auth import load_token_file, tokens_from_env

    config = Path(args.config) if args.config else None
    try:
        settings = build_settings(given_settings(args), config_file=config)
        tokens = load_token_file(settings.auth_file) if settings.auth_file is not None else []
        tokens = [*tokens, *tokens_from_env(os.environ)]
        if tokens:
            settings = settings.model_copy(update={"auth_tokens": tuple(tokens)})
    except (SettingsError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    return settings


def _check(settings: Settings) -> None:
    """Refuse, with one line, what would only fail later: no repository, unusable TLS files,
    tracing without its extra."""
    from modelserve.cli.main import CommandError
    from modelserve.observability.tracing import tracing_available
    from modelserve.security.tls import TlsError, server_ssl_context

    if isinstance(settings.model_repository, str):
        from modelserve.serving.remote import RemoteRepositoryError, check_remote_support

        try:
            check_remote_support(settings.model_repository)
        except RemoteRepositoryError as exc:
            raise CommandError(str(exc)) from None
    elif not settings.model_repository.is_dir():
        raise CommandError(f"{settings.model_repository} is not a directory")
    if settings.otlp_endpoint and not tracing_available():
        raise CommandError(
            "--otlp-endpoint needs the tracing extra: pip install 'modelserve[tracing]'"
        )
    try:
        server_ssl_context(settings)
    except TlsError as exc:
        raise CommandError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    import sys

    settings = _settings(args)
    if settings.metrics_dir is not None:
        # prometheus_client chooses multiprocess mode when it is first imported, from this
        # variable: set it before anything imports it (docs/metrics.md).
        os.environ[MULTIPROC_ENV] = str(settings.metrics_dir)
    from modelserve.observability.logs import configure_logging

    logs = configure_logging(settings.log_level, settings.log_format)
    atexit.register(logs.close)
    _check(settings)
    if settings.workers > 1:
        from modelserve.server.supervisor import Supervisor

        return Supervisor(sys.argv[1:] if args.argv is None else args.argv, settings).run()
    from modelserve.cli.main import CommandError
    from modelserve.serving.remote import RemoteRepositoryError
    from modelserve.transports.streams.service import StreamSourceError

    try:
        import uvloop
    except ImportError:
        run_loop: Any = asyncio.run
    else:
        run_loop = uvloop.run
    try:
        finished = run_loop(_serve(settings))
    except (RemoteRepositoryError, StreamSourceError) as exc:  # e.g. the first sync of a
        raise CommandError(str(exc)) from None  # repository on object storage
    if not finished:  # a predict that never returns would hold the process at exit
        logs.close()
        os._exit(1)
    return 0


async def _serve(settings: Settings) -> bool:
    """Serve until the first signal, then stop; False when model threads were left running."""
    from modelserve.server.compose import Server

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
    return await server.stop()
