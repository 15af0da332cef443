"""The server describes itself (/openapi.json, /docs), the description covers every route it
serves, and schemathesis fuzzes the API from that description: no 5xx, server alive after."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from modelserve.transports.http.openapi import openapi_document
from tests.conftest import RunningServer, Servers

MODELS = ("iris_onnx", "python_add", "echo_fp32", "echo_bytes", "echo_bool", "echo_uint64")


@pytest.fixture(scope="module")
def api_server(model_repo: Path, serve_module: Servers) -> RunningServer:
    return serve_module(
        model_repo,
        model_control_mode="explicit",
        load_models=MODELS,
        max_request_bytes=1024 * 1024,
        max_tensor_elements=100_000,
    )


def _concrete(path: str) -> str:
    return path.replace("{model_name}", "iris_onnx").replace("{model_version}", "1")


def test_openapi_json_is_the_shipped_document(api_server: RunningServer) -> None:
    reply = httpx.get(f"http://{api_server.url}/openapi.json")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == openapi_document()
    assert reply.json()["openapi"].startswith("3.")


def test_docs_page_lists_every_path_and_fetches_nothing(api_server: RunningServer) -> None:
    reply = httpx.get(f"http://{api_server.url}/docs")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/html")
    page = reply.text
    for path, item in openapi_document()["paths"].items():
        for method in item:
            assert f"{method.upper()} {path}" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert httpx.post(f"http://{api_server.url}/docs").status_code == 405


# Paths a V2/Triton server could answer; the documented ones must be served, and any other that
# this server serves must be documented.
CANDIDATES = [
    ("GET", "/v2/models/stats"),
    ("GET", "/v2/models/iris_onnx/stats"),
    ("GET", "/v2/models/iris_onnx/versions/1/stats"),
    ("GET", "/metrics"),
    ("GET", "/v2/logging"),
    ("POST", "/v2/logging"),
    ("GET", "/v2/trace/setting"),
    ("GET", "/v2/models/iris_onnx/trace/setting"),
    ("GET", "/v2/systemsharedmemory/status"),
    ("GET", "/v2/cudasharedmemory/status"),
    ("POST", "/v2/models/iris_onnx/generate"),
    ("GET", "/v2/models"),
    ("GET", "/healthz"),
    ("GET", "/v1/models/iris_onnx"),
]


def _served(client: httpx.Client, method: str, path: str) -> bool:
    reply = client.request(method, path)
    return not (reply.status_code == 404 and "no route" in reply.text)


def test_every_route_is_documented_and_every_documented_route_served(
    api_server: RunningServer,
) -> None:
    document = openapi_document()["paths"]
    documented = {
        (method.upper(), _concrete(path)) for path, item in document.items() for method in item
    }
    with httpx.Client(base_url=f"http://{api_server.url}") as client:
        for method, path in sorted(documented):
            if path.startswith("/v2/repository/models/"):
                continue  # load/unload would change the server; routed as shown below
            assert _served(client, method, path), f"{method} {path} is documented, not served"
        reply = client.post("/v2/repository/models/no_such_model/load")
        assert reply.status_code == 404 and "no route" not in reply.text
        undocumented = [
            f"{method} {path}"
            for method, path in CANDIDATES
            if (method, path) not in documented and _served(client, method, path)
        ]
    assert not undocumented, f"served but missing from openapi.json: {undocumented}"


def test_fuzz_the_rest_api_from_its_description(api_server: RunningServer) -> None:
    """schemathesis generates valid and invalid requests for every documented operation (with
    real model names half the time); none may get a 5xx, and the server must stay up."""
    base_url = f"http://{api_server.url}"
    schema = schemathesis.openapi.from_dict(openapi_document())
    strategies = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if "/repository/models/" in operation.path:
            continue  # load/unload: covered by the lifecycle tests; fuzzing would unload models
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategies.append(operation.as_strategy(generation_mode=mode))
            if "{model_name}" in operation.path:
                for name in MODELS[:3]:
                    path_parameters = {"model_name": name}
                    if "{model_version}" in operation.path:
                        path_parameters["model_version"] = "1"
                    strategies.append(
                        operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)
                    )
    failures: list[str] = []
    statuses: list[int] = []

    @settings(
        max_examples=120,  # bounded by count, not time: a loaded machine runs them all, slower
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=st.one_of(*strategies))
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, timeout=10)
        statuses.append(response.status_code)
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}")

    run()
    assert not failures, failures[:10]
    assert len(statuses) >= 100 and 200 in statuses and 400 in statuses, sorted(set(statuses))
    assert httpx.get(f"{base_url}/v2/health/ready").status_code == 200
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1] * 4}]}
    assert httpx.post(f"{base_url}/v2/models/iris_onnx/infer", json=body).status_code == 200
