"""The client package stays light and its public API is ``__all__``."""

from __future__ import annotations

import ast

import modelserve.client
from tests.harness import run_python

SERVER_SIDE = (
    "modelserve.server",
    "modelserve.transports",
    "modelserve.dataplane",
    "modelserve.serving",
    "modelserve.scheduling",
    "modelserve.runtimes",
    "modelserve.config",
    "modelserve.observability",
)


def _loaded(code: str, names: tuple[str, ...]) -> list[str]:
    probe = f"import sys\n{code}\nprint([n for n in {names!r} if n in sys.modules])\n"
    result = run_python(probe)
    assert result.returncode == 0, result.stderr
    return list(ast.literal_eval(result.stdout))


def test_import_loads_no_protocol_library_and_no_server() -> None:
    heavy = ("httpx", "grpc", "pandas", "pyarrow", "google.protobuf", "prometheus_client")
    assert _loaded("import modelserve.client", heavy + SERVER_SIDE) == []
    assert _loaded("from modelserve.client import Client, AsyncClient", heavy + SERVER_SIDE) == []


def test_a_rest_client_loads_no_protocol_library() -> None:
    """Client speaks REST with the standard library; AsyncClient with httpx."""
    code = "from modelserve.client import Client\nClient('127.0.0.1:1').close()"
    names = ("httpx", "grpc", "pandas", *SERVER_SIDE)
    assert _loaded(code, names) == []
    code = "from modelserve.client import AsyncClient\nAsyncClient('127.0.0.1:1')"
    assert _loaded(code, names) == ["httpx"]


def test_a_grpc_client_loads_grpc_only() -> None:
    code = "from modelserve.client import Client\nClient('grpc://127.0.0.1:1').close()"
    names = ("httpx", "grpc", "pandas", *SERVER_SIDE)
    assert _loaded(code, names) == ["grpc"]


def test_public_api_is_all() -> None:
    for name in modelserve.client.__all__:
        assert getattr(modelserve.client, name).__name__ == name
    assert sorted(modelserve.client.__all__) == sorted(
        name for name in dir(modelserve.client) if not name.startswith("_") and name[0].isupper()
    )
