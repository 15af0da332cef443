"""Which action (for the token check) each REST route and each RPC is: every documented route
and every RPC has the intended one; unknown routes need admin."""

from __future__ import annotations

import pytest

from modelserve.protocol import grpc_service_pb2 as pb
from modelserve.security.auth import (
    Action,
)
from modelserve.transports.access import GRPC_ACTIONS, grpc_action, grpc_message_model, rest_action
from modelserve.transports.http.openapi import openapi_document


def _concrete(path: str) -> str:
    return path.replace("{model_name}", "iris").replace("{model_version}", "3")


def test_every_documented_route_has_the_intended_action() -> None:
    expected = {
        "/v2": (Action.METADATA, ""),
        "/v2/health/live": (Action.PUBLIC, ""),
        "/v2/health/ready": (Action.PUBLIC, ""),
        "/openapi.json": (Action.PUBLIC, ""),
        "/docs": (Action.PUBLIC, ""),
        "/v2/repository/index": (Action.READ, ""),
        "/v2/models/stats": (Action.READ, ""),
        "/metrics": (Action.READ, ""),
        "/v2/repository/models/iris/load": (Action.ADMIN, ""),
        "/v2/repository/models/iris/unload": (Action.ADMIN, ""),
        "/v2/models/iris/labels": (Action.FEEDBACK, "iris"),
        "/v2/models/iris/monitoring": (Action.MODEL_READ, "iris"),
        "/v2/models/iris/experiment": (Action.ADMIN, ""),
    }
    for path in openapi_document()["paths"]:
        concrete = _concrete(path)
        if concrete in expected:
            want = expected[concrete]
        elif concrete.endswith("/infer"):
            want = (Action.INFER, "iris")
        elif "sharedmemory/" in concrete:
            want = (Action.ADMIN, "")
        else:
            assert concrete.startswith("/v2/models/iris"), path
            want = (Action.MODEL_READ, "iris")
        assert rest_action(concrete) == want, path
        assert rest_action(concrete + "/") == want, path
    for path, want in expected.items():
        assert rest_action(path) == want


@pytest.mark.parametrize(
    "path",
    ["/", "/v1/models/iris", "/v2/models", "/v2/models/iris/explode", "/v2/repository/x", "/x"],
)
def test_unknown_routes_need_admin(path: str) -> None:
    assert rest_action(path) == (Action.ADMIN, "")


def test_every_rpc_has_an_action() -> None:
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    names = {f"/{service.full_name}/{method.name}" for method in service.methods}
    assert names <= set(GRPC_ACTIONS), names - set(GRPC_ACTIONS)
    assert grpc_action("/inference.GRPCInferenceService/SomethingNew") is Action.ADMIN
    infer = pb.ModelInferRequest(model_name="iris")
    assert grpc_message_model(Action.INFER, infer) == (Action.INFER, "iris")
    stats = pb.ModelStatisticsRequest(name="")
    assert grpc_message_model(Action.MODEL_READ, stats) == (Action.READ, "")
    stats = pb.ModelStatisticsRequest(name="iris")
    assert grpc_message_model(Action.MODEL_READ, stats) == (Action.MODEL_READ, "iris")


@pytest.mark.parametrize(
    "path",
    [
        "/v2/systemsharedmemory/status",
        "/v2/systemsharedmemory/unregister",
        "/v2/systemsharedmemory/region/r/status",
        "/v2/systemsharedmemory/region/r/register",
        "/v2/systemsharedmemory/region/r/unregister",
        "/v2/cudasharedmemory/status",
        "/v2/cudasharedmemory/region/r/register",
    ],
)
def test_shared_memory_routes_need_admin(path: str) -> None:
    assert rest_action(path) == (Action.ADMIN, "")
    rpc = "/inference.GRPCInferenceService/SystemSharedMemoryRegister"
    assert grpc_action(rpc) is Action.ADMIN
