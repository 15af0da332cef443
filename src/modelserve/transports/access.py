"""Which Action each REST route and each gRPC RPC is, for the Authenticator (security/auth.py).

One table per transport. Anything not listed needs the ``admin`` scope (fail closed), so a route
or RPC added later without an entry here is not silently open; tests/unit/test_access.py checks
every route of the OpenAPI document and every RPC of the proto against these tables.
"""

from __future__ import annotations

from typing import Any

from modelserve.security.auth import Action

__all__ = ["PUBLIC_PATHS", "grpc_action", "grpc_message_model", "rest_action"]

PUBLIC_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/openapi.json", "/docs"})
"""Open to anyone unless --auth-health: probes and the API description."""

_SERVER_READS = frozenset({"/v2/repository/index", "/v2/models/stats", "/metrics"})

_MODEL_READS = frozenset({"", "ready", "config", "stats", "validation", "monitoring"})


def rest_action(path: str) -> tuple[Action, str]:
    """The action and model name ("" when none) of a REST request path."""
    stripped = path.strip("/")
    if f"/{stripped}" in PUBLIC_PATHS:
        return Action.PUBLIC, ""
    if f"/{stripped}" in _SERVER_READS:
        return Action.READ, ""
    parts = stripped.split("/")
    if parts == ["v2"]:
        return Action.METADATA, ""
    if len(parts) >= 3 and parts[0] == "v2" and parts[1] == "models":
        name, tail = parts[2], parts[3:]
        if len(tail) >= 2 and tail[0] == "versions":
            tail = tail[2:]
        if tail == ["infer"]:
            return Action.INFER, name
        if parts[3:] == ["labels"]:
            return Action.FEEDBACK, name
        if not tail or (len(tail) == 1 and tail[0] in _MODEL_READS):
            return Action.MODEL_READ, name
    return Action.ADMIN, ""


_SERVICE = "/inference.GRPCInferenceService/"

GRPC_ACTIONS: dict[str, Action] = {
    _SERVICE + "ServerLive": Action.PUBLIC,
    _SERVICE + "ServerReady": Action.PUBLIC,
    "/grpc.health.v1.Health/Check": Action.PUBLIC,
    "/grpc.health.v1.Health/Watch": Action.PUBLIC,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": Action.PUBLIC,
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": Action.PUBLIC,
    _SERVICE + "ServerMetadata": Action.METADATA,
    _SERVICE + "RepositoryIndex": Action.READ,
    _SERVICE + "ModelReady": Action.MODEL_READ,
    _SERVICE + "ModelMetadata": Action.MODEL_READ,
    _SERVICE + "ModelConfig": Action.MODEL_READ,
    _SERVICE + "ModelStatistics": Action.MODEL_READ,
    _SERVICE + "ModelInfer": Action.INFER,
    _SERVICE + "ModelStreamInfer": Action.INFER,
    _SERVICE + "RepositoryModelLoad": Action.ADMIN,
    _SERVICE + "RepositoryModelUnload": Action.ADMIN,
    # shared memory: registering maps host memory into the server, so admin only (status shows
    # the keys; CUDA's answer nothing but are what perf_analyzer calls)
    _SERVICE + "SystemSharedMemoryStatus": Action.ADMIN,
    _SERVICE + "SystemSharedMemoryRegister": Action.ADMIN,
    _SERVICE + "SystemSharedMemoryUnregister": Action.ADMIN,
    _SERVICE + "CudaSharedMemoryStatus": Action.ADMIN,
    _SERVICE + "CudaSharedMemoryRegister": Action.ADMIN,
    _SERVICE + "CudaSharedMemoryUnregister": Action.ADMIN,
}


def grpc_action(method: str) -> Action:
    """The action of a full gRPC method name ('/package.Service/Method')."""
    return GRPC_ACTIONS.get(method, Action.ADMIN)


def grpc_message_model(action: Action, message: Any) -> tuple[Action, str]:
    """Refine an RPC's action with the model its request message names. ModelStatistics for
    every model (no name) is a server-wide read."""
    if action is Action.INFER:
        return action, str(getattr(message, "model_name", ""))
    if action is Action.MODEL_READ:
        name = str(getattr(message, "name", ""))
        return (action, name) if name else (Action.READ, "")
    return action, ""
