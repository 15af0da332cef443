"""modelserve: a model server speaking the Open Inference Protocol (KServe V2).

The public names below are imported on first use (PEP 562), so that ``import modelserve`` (and
``import modelserve.client``) stays light: no server, no gRPC, no ML framework.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelserve.config.model import ModelConfig
    from modelserve.config.settings import Settings
    from modelserve.errors import ErrorCode, ServerError
    from modelserve.runtimes.base import LoadContext, Runtime
    from modelserve.server.compose import Server
    from modelserve.types import InferenceRequest, InferenceResponse, Tensor, TensorSpec

_PUBLIC = {
    "ErrorCode": "modelserve.errors",
    "InferenceRequest": "modelserve.types",
    "InferenceResponse": "modelserve.types",
    "LoadContext": "modelserve.runtimes.base",
    "ModelConfig": "modelserve.config.model",
    "Runtime": "modelserve.runtimes.base",
    "Server": "modelserve.server.compose",
    "ServerError": "modelserve.errors",
    "Settings": "modelserve.config.settings",
    "Tensor": "modelserve.types",
    "TensorSpec": "modelserve.types",
}

__all__ = [
    "ErrorCode",
    "InferenceRequest",
    "InferenceResponse",
    "LoadContext",
    "ModelConfig",
    "Runtime",
    "Server",
    "ServerError",
    "Settings",
    "Tensor",
    "TensorSpec",
]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'modelserve' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})
