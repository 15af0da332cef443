"""Broken models are reported UNAVAILABLE with a reason; the others serve."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import RunningServer, Servers


@pytest.fixture(scope="module")
def broken_server(
    model_repo: Path, tmp_path_factory: pytest.TempPathFactory, serve_module: Servers
) -> RunningServer:
    repo = tmp_path_factory.mktemp("broken")
    shutil.copytree(model_repo / "iris_onnx", repo / "iris_onnx")
    # two versions, latest: 2 -> both served; v3 exists but is not selected
    for version in ("2", "3"):
        shutil.copytree(model_repo / "iris_onnx" / "1", repo / "iris_onnx" / version)
    (repo / "iris_onnx" / "model.yaml").write_text(
        "max_batch_size: 64\nversion_policy: {latest: 2}\n"
    )
    # a pickle without trust
    (repo / "pickled" / "1").mkdir(parents=True)
    (repo / "pickled" / "1" / "model.pkl").write_bytes(pickle.dumps({"not": "a model"}))
    # a config with a bad key value
    (repo / "badconfig" / "1").mkdir(parents=True)
    (repo / "badconfig" / "model.yaml").write_text(yaml.safe_dump({"max_batch_size": -3}))
    # a corrupt ONNX file
    (repo / "corrupt" / "1").mkdir(parents=True)
    (repo / "corrupt" / "1" / "model.onnx").write_bytes(b"this is not onnx")
    # no version folder
    (repo / "empty").mkdir()
    return serve_module(repo)


def test_index_reports_states_and_reasons(broken_server: RunningServer) -> None:
    with httpx.Client(base_url=f"http://{broken_server.url}") as client:
        rows = {(r["name"], r["version"]): r for r in client.post("/v2/repository/index").json()}
    assert rows[("iris_onnx", "2")]["state"] == "READY"
    assert rows[("iris_onnx", "3")]["state"] == "READY"
    assert ("iris_onnx", "1") not in rows
    pickled = rows[("pickled", "1")]
    assert pickled["state"] == "UNAVAILABLE" and "trust" in pickled["reason"]
    bad = rows[("badconfig", "")]
    assert bad["state"] == "UNAVAILABLE"
    assert "model.yaml" in bad["reason"] and "max_batch_size" in bad["reason"]
    assert rows[("corrupt", "1")]["state"] == "UNAVAILABLE" and rows[("corrupt", "1")]["reason"]
    assert rows[("empty", "")]["state"] == "UNAVAILABLE"


def test_unavailable_model_answers_503_and_others_serve(broken_server: RunningServer) -> None:
    body = {
        "inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4], "data": [1, 2, 3, 4]}]
    }
    with httpx.Client(base_url=f"http://{broken_server.url}") as client:
        assert client.get("/v2/health/ready").status_code == 200
        for name in ("pickled", "badconfig", "corrupt", "empty"):
            reply = client.post(f"/v2/models/{name}/infer", json=body)
            assert reply.status_code == 503, reply.text
            assert "error" in reply.json()
            assert client.get(f"/v2/models/{name}/ready").status_code == 503
        good = {
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]
        }
        reply = client.post("/v2/models/iris_onnx/infer", json=good)
        assert reply.status_code == 200
        assert reply.json()["model_version"] == "3"
        reply = client.post("/v2/models/iris_onnx/versions/2/infer", json=good)
        assert reply.json()["model_version"] == "2"
        assert client.get("/v2/models/iris_onnx").json()["versions"] == ["2", "3"]
        ready_only = client.post("/v2/repository/index", json={"ready": True}).json()
        assert {r["name"] for r in ready_only} == {"iris_onnx"}
