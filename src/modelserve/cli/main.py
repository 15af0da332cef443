"""Command line: ``modelserve serve <repo>``."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from modelserve.config.model import ModelConfig
from modelserve.config.settings import Settings, TokenConfig
from modelserve.observability.logs import configure_logging
from modelserve.observability.tracing import tracing_available
from modelserve.security.auth import hash_token, load_token_file, tokens_from_env
from modelserve.security.tls import TlsError, grpc_tls_material, server_ssl_context
from modelserve.server.compose import Server
from modelserve.server.supervisor import Supervisor

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
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the HTTP and gRPC ports (SO_REUSEPORT)",
    )
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    _add_security_flags(serve)
    _add_observability_flags(serve)
    sub.add_parser("schema", help="print the JSON schema of model.yaml")
    sub.add_parser("token", help="print a new random API token and its auth-file entry")
    return parser


def _add_security_flags(serve: argparse.ArgumentParser) -> None:
    """Authentication, TLS and limits (docs/security.md). Tokens are never command-line flags:
    they would show in the process list and shell history."""
    group = serve.add_argument_group("security")
    group.add_argument(
        "--auth-file",
        type=Path,
        help="YAML list of {name, token_sha256 | token, scopes}; turns authentication on "
        "(so does any MODELSERVE_TOKEN_<NAME>=<token>:<scopes> environment variable)",
    )
    group.add_argument(
        "--auth-health",
        action="store_true",
        help="require a token for health probes and /openapi.json, /docs too",
    )
    group.add_argument("--tls-cert", type=Path, help="PEM certificate chain: serve TLS")
    group.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    group.add_argument(
        "--tls-client-ca", type=Path, help="PEM CA: require client certificates it signed (mTLS)"
    )
    group.add_argument(
        "--max-tensor-elements",
        type=int,
        default=64 * 1024 * 1024,
        help="most tensor elements one inference request may declare",
    )
    group.add_argument(
        "--header-timeout-secs",
        type=float,
        default=10.0,
        help="a client must send a request's headers within this time",
    )
    group.add_argument(
        "--body-timeout-secs",
        type=float,
        default=30.0,
        help="a client must send a request's body within this time after the headers",
    )
    group.add_argument(
        "--max-connections", type=int, default=1000, help="most open HTTP connections"
    )


def _add_observability_flags(serve: argparse.ArgumentParser) -> None:
    """Logs, metrics, tracing (docs/observability.md); --log-level is above."""
    group = serve.add_argument_group("observability")
    group.add_argument(
        "--log-format",
        default="auto",
        choices=["auto", "json", "text"],
        help="auto (default): text on a terminal, JSON lines otherwise",
    )
    group.add_argument(
        "--access-log", action="store_true", help="log one line per request (modelserve.access)"
    )
    group.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="also serve GET /metrics on this port (it is always on the HTTP port)",
    )
    group.add_argument(
        "--otlp-endpoint",
        default=None,
        metavar="URL",
        help="export OpenTelemetry traces over OTLP/HTTP, e.g. http://127.0.0.1:4318 "
        "(needs modelserve[tracing])",
    )


def _auth_tokens(auth_file: Path | None) -> tuple[TokenConfig, ...]:
    tokens = load_token_file(auth_file) if auth_file is not None else []
    return (*tokens, *tokens_from_env(os.environ))


def _print_new_token() -> None:
    import secrets

    token = secrets.token_urlsafe(32)
    print(f"token: {token}")
    print("auth-file entry (keeps only the digest):")
    print(f"- name: CHANGE-ME\n  token_sha256: {hash_token(token)}\n  scopes: [infer]")


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
    if args.command == "token":
        _print_new_token()
        return 0
    atexit.register(configure_logging(args.log_level, args.log_format).close)
    if args.otlp_endpoint and not tracing_available():
        print(
            "modelserve: --otlp-endpoint needs the tracing extra: "
            "pip install 'modelserve[tracing]'",
            file=sys.stderr,
        )
        return 2
    try:
        auth_tokens = _auth_tokens(args.auth_file)
    except ValueError as exc:
        print(f"modelserve: {exc}", file=sys.stderr)
        return 2
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
            auth_tokens=auth_tokens,
            auth_health=args.auth_health,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_client_ca=args.tls_client_ca,
            max_tensor_elements=args.max_tensor_elements,
            header_timeout_s=args.header_timeout_secs,
            body_timeout_s=args.body_timeout_secs,
            max_connections=args.max_connections,
            reuse_port=args.reuse_port,
            metrics_port=args.metrics_port,
            access_log=args.access_log,
            otlp_endpoint=args.otlp_endpoint,
        )
    except ValidationError as exc:
        print(f"modelserve: invalid settings: {exc}", file=sys.stderr)
        return 2
    if not settings.model_repository.is_dir():
        print(f"modelserve: {settings.model_repository} is not a directory", file=sys.stderr)
        return 2
    try:
        server_ssl_context(settings)
        grpc_tls_material(settings)
    except TlsError as exc:
        print(f"modelserve: {exc}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("modelserve: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.workers > 1:
        if settings.model_control_mode == "explicit":
            print(
                "modelserve: --workers > 1 cannot be combined with explicit model control: "
                "a load or unload would reach one worker only; use poll mode",
                file=sys.stderr,
            )
            return 2
        return Supervisor(
            list(argv if argv is not None else sys.argv[1:]),
            args.workers,
            settings.host,
            (settings.http_port, settings.grpc_port, settings.metrics_port),
        ).run()
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(settings))
    else:
        uvloop.run(_serve(settings))
    return 0
