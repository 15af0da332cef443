"""modelserve: a model server speaking the Open Inference Protocol (KServe V2)."""

from modelserve.config import ModelConfig, Settings
from modelserve.errors import ErrorCode, ServerError
from modelserve.runtimes.base import LoadContext, Runtime
from modelserve.server import Server
from modelserve.types import InferenceRequest, InferenceResponse, Tensor, TensorSpec

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
