"""The flags of the client commands (predict, models, labels, monitor, experiment), each also a
``MODELSERVE_*`` environment variable, defined once here.

A flag wins over its variable, which wins over the default. The names are the client's own and
never those of the server's settings (``docs/configuration.md``): ``MODELSERVE_URL`` is where
the client goes, ``MODELSERVE_HOST`` where the server listens; nor do they start with
``MODELSERVE_TOKEN_``, the server's token variables (``MODELSERVE_TOKEN`` is the client's
token). A test keeps both apart and docs/cli.md equal to this table.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

    from modelserve.client import Client

__all__ = [
    "CLIENT_FLAGS",
    "CONNECTION",
    "ClientFlag",
    "add_flags",
    "connect",
    "failures",
    "value",
]

DEFAULT_HTTP_URL = "127.0.0.1:8000"
DEFAULT_GRPC_URL = "127.0.0.1:8001"
TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off", ""})


def _positive_float(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise ValueError("not a number") from None
    if number <= 0:
        raise ValueError("must be more than 0")
    return number


def _count(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise ValueError("not a number") from None
    if number < 0:
        raise ValueError("must be 0 or more")
    return number


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise ValueError("must be true or false (1/0, yes/no, on/off)")


@dataclass(frozen=True, slots=True)
class ClientFlag:
    flag: str
    env: str
    help: str
    metavar: str | None = None
    default: Any = None
    convert: Callable[[str], Any] = str
    choices: tuple[str, ...] | None = None
    switch: bool = False
    """A flag without a value (``--grpc``); its variable takes true/false."""

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


CLIENT_FLAGS: dict[str, ClientFlag] = {
    f.dest: f
    for f in (
        ClientFlag(
            "--url",
            "MODELSERVE_URL",
            "the server: host:port, http(s)://… or grpc(s)://… "
            f"[default: {DEFAULT_HTTP_URL}, {DEFAULT_GRPC_URL} with --grpc]",
            "URL",
        ),
        ClientFlag("--grpc", "MODELSERVE_GRPC", "speak gRPC instead of REST", switch=True,
                   convert=_boolean, default=False),
        ClientFlag("--token", "MODELSERVE_TOKEN", "API token, sent as 'Authorization: Bearer'",
                   "TOKEN"),
        ClientFlag("--ca-file", "MODELSERVE_CA_FILE",
                   "certificate authority to trust for TLS (default: the system's)", "FILE"),
        ClientFlag("--client-cert", "MODELSERVE_CLIENT_CERT",
                   "client certificate, for mutual TLS (with --client-key)", "FILE"),
        ClientFlag("--client-key", "MODELSERVE_CLIENT_KEY", "the client certificate's key",
                   "FILE"),
        ClientFlag("--timeout", "MODELSERVE_TIMEOUT", "seconds per try [default: 60]",
                   "SECONDS", 60.0, _positive_float),
        ClientFlag("--retries", "MODELSERVE_RETRIES",
                   "tries after the first on 503 or a lost connection [default: 3]", "N", 3,
                   _count),
        ClientFlag("--output", "MODELSERVE_OUTPUT",
                   "table (rich on a terminal, plain text otherwise), json or csv "
                   "[default: table]", None, "table", choices=("table", "json", "csv")),
        ClientFlag("--input", "MODELSERVE_INPUT",
                   "the data: .json (rows, records, {input: array} or a V2 request), .jsonl, "
                   ".csv, .parquet, .npy, .npz, or - for JSON or CSV on stdin", "FILE"),
        ClientFlag("--version", "MODELSERVE_MODEL_VERSION",
                   "model version (default: the server's choice)", "N"),
        ClientFlag("--outputs", "MODELSERVE_OUTPUTS",
                   "comma-separated outputs to ask for (default: all)", "NAMES"),
        ClientFlag("--id", "MODELSERVE_REQUEST_ID",
                   "the request id (V2 id and x-request-id), for labels later", "ID"),
        ClientFlag("--ready", "MODELSERVE_READY_ONLY", "only the READY versions", switch=True,
                   convert=_boolean, default=False),
        ClientFlag("--model-config", "MODELSERVE_MODEL_CONFIG",
                   "a model.yaml (or JSON) overriding the model's own for this load", "FILE"),
        ClientFlag("--file", "MODELSERVE_EXPERIMENT_FILE",
                   "the experiment: YAML or JSON, the 'experiment:' mapping of model.yaml (or "
                   "a model.yaml holding one)", "FILE"),
    )
}  # fmt: skip

CONNECTION = (
    "url",
    "grpc",
    "token",
    "ca_file",
    "client_cert",
    "client_key",
    "timeout",
    "retries",
    "output",
)
"""The flags every client command has."""


def _help(flag: ClientFlag) -> str:
    return f"{flag.help} [env {flag.env}]".replace("%", "%%")


def add_flags(parser: argparse.ArgumentParser, *names: str) -> None:
    """Add the connection flags and ``names``; values are resolved by ``value``."""
    group = parser.add_argument_group("connection")
    for name in (*CONNECTION, *names):
        flag = CLIENT_FLAGS[name]
        target = group if name in CONNECTION else parser
        if flag.switch:
            target.add_argument(
                flag.flag, dest=name, action="store_const", const="true",
                default=argparse.SUPPRESS, help=_help(flag),
            )  # fmt: skip
        else:
            target.add_argument(
                flag.flag, dest=name, metavar=flag.metavar, choices=flag.choices,
                default=argparse.SUPPRESS, help=_help(flag),
            )  # fmt: skip


def value(args: argparse.Namespace, name: str, env: Mapping[str, str] | None = None) -> Any:
    """The flag's value: typed on the command line, else its variable, else its default."""
    from modelserve.cli.main import CommandError

    flag = CLIENT_FLAGS[name]
    environ = os.environ if env is None else env
    if hasattr(args, name):
        raw, where = getattr(args, name), flag.flag
    elif flag.env in environ:
        raw, where = environ[flag.env], flag.env
    else:
        return flag.default
    if flag.choices is not None and raw not in flag.choices:
        raise CommandError(f"{where}: {raw!r} is not one of {', '.join(flag.choices)}")
    try:
        return flag.convert(raw)
    except ValueError as exc:
        raise CommandError(f"{where}: {raw!r}: {exc}") from None


def connect(args: argparse.Namespace) -> Client:
    """The client the connection flags describe."""
    from modelserve.cli.main import CommandError
    from modelserve.client import Client, Tls

    grpc = value(args, "grpc")
    url = value(args, "url") or (DEFAULT_GRPC_URL if grpc else DEFAULT_HTTP_URL)
    ca, cert, key = value(args, "ca_file"), value(args, "client_cert"), value(args, "client_key")
    try:
        tls = Tls(ca_file=ca, cert_file=cert, key_file=key) if ca or cert or key else None
        return Client(
            url,
            "grpc" if grpc else None,
            token=value(args, "token"),
            tls=tls,
            timeout=value(args, "timeout"),
            retries=value(args, "retries"),
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None


@contextmanager
def failures() -> Iterator[None]:
    """A ClientError as one line: exit code 2 for a request the server (or the client) found
    wrong, 1 for anything else (the server failed, could not be reached…)."""
    from modelserve.cli.main import CommandError
    from modelserve.client import ClientError, InvalidInputError

    try:
        yield
    except InvalidInputError as exc:
        raise CommandError(exc.message, 2) from None
    except ClientError as exc:
        raise CommandError(exc.message, 1) from None
