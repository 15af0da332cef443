"""modelserve's Python client: ``Client`` and ``AsyncClient`` for modelserve and any server of
the Open Inference Protocol (KServe V2: Triton, KServe), over REST or gRPC, and
``Client.local(repository)`` for the same API in-process (docs/client.md).

This package imports nothing of the server (an import contract), and its names are imported on
first use, so ``import modelserve.client`` loads neither httpx, grpc nor pandas: the protocol a
client speaks is imported when the client is made, pandas only when a DataFrame is passed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelserve.client.aio import AsyncClient
    from modelserve.client.connection import Tls
    from modelserve.client.errors import (
        AuthError,
        ClientError,
        ConnectionFailedError,
        DeadlineError,
        InvalidInputError,
        NotFoundError,
        TlsError,
        UnavailableError,
        UnsupportedError,
    )
    from modelserve.client.results import Outputs, PredictedArray, RepositoryModel, Rows
    from modelserve.client.sync import Client

_PUBLIC = {
    "AsyncClient": "modelserve.client.aio",
    "AuthError": "modelserve.client.errors",
    "Client": "modelserve.client.sync",
    "ClientError": "modelserve.client.errors",
    "ConnectionFailedError": "modelserve.client.errors",
    "DeadlineError": "modelserve.client.errors",
    "InvalidInputError": "modelserve.client.errors",
    "NotFoundError": "modelserve.client.errors",
    "Outputs": "modelserve.client.results",
    "PredictedArray": "modelserve.client.results",
    "RepositoryModel": "modelserve.client.results",
    "Rows": "modelserve.client.results",
    "Tls": "modelserve.client.connection",
    "TlsError": "modelserve.client.errors",
    "UnavailableError": "modelserve.client.errors",
    "UnsupportedError": "modelserve.client.errors",
}

__all__ = [
    "AsyncClient",
    "AuthError",
    "Client",
    "ClientError",
    "ConnectionFailedError",
    "DeadlineError",
    "InvalidInputError",
    "NotFoundError",
    "Outputs",
    "PredictedArray",
    "RepositoryModel",
    "Rows",
    "Tls",
    "TlsError",
    "UnavailableError",
    "UnsupportedError",
]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'modelserve.client' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})
