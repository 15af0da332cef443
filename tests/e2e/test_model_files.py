"""Model files and names cannot lead the server outside its repository or into running code the
operator did not mark as trusted: the load API refuses traversal, absolute paths and URLs as model
names, config keys that point outside a version folder, and pickle without ``trust: true``."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningServer, Servers
from tests.harness import write_python_model

PYTHON_MODEL = """
from pathlib import Path
Path({marker!r}).write_text("imported")

class Model:
    inputs = [{{"name": "IN", "datatype": "FP32", "shape": [-1, 1]}}]
    outputs = [{{"name": "OUT", "datatype": "FP32", "shape": [-1, 1]}}]

    def predict(self, inputs):
        return {{"OUT": inputs["IN"]}}
"""


class WritesAFile:
    """Unpickling this creates a file: proof that a pickle was (not) opened."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (_write, (self.marker, "unpickled"))


def _write(path: str, text: str) -> None:
    Path(path).write_text(text)


@pytest.fixture(scope="module")
def layout(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("layout")
    repo, outside, markers = root / "repo", root / "outside", root / "markers"
    markers.mkdir()
    shutil.copytree(model_repo / "iris_onnx", repo / "iris_onnx")
    shutil.copytree(model_repo / "iris_onnx", repo / "fresh")  # not loaded at start
    # a python model outside the repository: importing it would leave a marker file
    write_python_model(root, "outside", PYTHON_MODEL.format(marker=str(markers / "outside")))
    (outside / "secret.onnx").write_bytes(
        (model_repo / "iris_onnx" / "1" / "model.onnx").read_bytes()
    )
    # a model whose artifact: and warmup sample_file: point outside its folders
    (repo / "escaper" / "1").mkdir(parents=True)
    (repo / "escaper" / "model.yaml").write_text(
        "runtime: onnx\nartifact: ../../../outside/secret.onnx\n"
    )
    (repo / "warm_escaper" / "1").mkdir(parents=True)
    shutil.copy(model_repo / "iris_onnx" / "1" / "model.onnx", repo / "warm_escaper" / "1")
    (repo / "warm_escaper" / "model.yaml").write_text(
        "warmup: {sample_file: ../../outside/samples.npz}\n"
    )
    # a symlinked artifact that leaves the repository
    (repo / "linked" / "1").mkdir(parents=True)
    (repo / "linked" / "model.yaml").write_text("artifact: model.onnx\n")
    os.symlink(outside / "secret.onnx", repo / "linked" / "1" / "model.onnx")
    # a pickle that would write a file if it were ever unpickled
    (repo / "pickled" / "1").mkdir(parents=True)
    payload = pickle.dumps(WritesAFile(str(markers / "unpickled")))
    (repo / "pickled" / "1" / "model.pkl").write_bytes(payload)
    return {"repo": repo, "outside": outside, "markers": markers}


@pytest.fixture(scope="module")
def server(layout: dict[str, Path], serve_module: Servers) -> RunningServer:
    """This module's own server (not the session's): explicit mode, only iris_onnx loaded."""
    return serve_module(layout["repo"], model_control_mode="explicit", load_models=("iris_onnx",))


BAD_NAMES = [
    "..",
    "%2e%2e",
    "%2E%2E",
    ".%2e",
    "..%2Foutside",
    "..%2F..%2Fouter",
    "%2Fetc",
    "%2Fetc%2Fpasswd",
    "http:%2F%2Fexample.org%2Fmodel",
    "file:%2F%2F%2Fetc%2Fpasswd",
    "..%5Coutside",
    "outside%00",
    "~",
    "%7Eroot",
    "iris_onnx%2F..%2F..%2Fouter",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_load_api_refuses_names_that_leave_the_repository(
    server: RunningServer, layout: dict[str, Path], name: str
) -> None:
    with httpx.Client(base_url=f"http://{server.url}") as client:
        reply = client.post(f"/v2/repository/models/{name}/load")
        assert reply.status_code in (400, 404), reply.text
        assert "error" in reply.json()
        index = {row["name"] for row in client.post("/v2/repository/index").json()}
    assert index <= {"iris_onnx", "fresh", "escaper", "warm_escaper", "linked", "pickled"}
    assert not (layout["markers"] / "outside").exists()


def test_model_name_with_dot_dot_in_the_middle(server: RunningServer) -> None:
    with httpx.Client(base_url=f"http://{server.url}") as client:
        for name in ("a..b", "...", ".hidden"):
            assert client.post(f"/v2/repository/models/{name}/load").status_code in (400, 404)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("escaper", "outside"), ("warm_escaper", "sample_file"), ("linked", "outside")],
)
def test_config_paths_cannot_leave_the_version_folder(
    server: RunningServer, name: str, fragment: str
) -> None:
    with httpx.Client(base_url=f"http://{server.url}") as client:
        reply = client.post(f"/v2/repository/models/{name}/load")
        assert reply.status_code == 400
        assert fragment in reply.json()["error"]
        assert client.get(f"/v2/models/{name}/ready").status_code == 503


@pytest.mark.parametrize(
    "config",
    [
        {"artifact": "/etc/passwd"},
        {"artifact": "../../outside/secret.onnx"},
        {"runtime": "python", "entrypoint": "..model:Model"},
        {"runtime": "python", "entrypoint": "os.path:join"},
        {"warmup": {"sample_file": "/etc/passwd"}},
    ],
)
def test_config_override_cannot_point_outside(
    server: RunningServer, layout: dict[str, Path], config: dict[str, object]
) -> None:
    with httpx.Client(base_url=f"http://{server.url}") as client:
        reply = client.post(
            "/v2/repository/models/fresh/load",
            json={"parameters": {"config": json.dumps(config)}},
        )
        assert reply.status_code == 400, reply.text
        assert client.get("/v2/models/fresh/ready").status_code == 503
        infer = {
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1] * 4}]
        }
        assert client.post("/v2/models/iris_onnx/infer", json=infer).status_code == 200
    assert not (layout["markers"] / "outside").exists()


@pytest.mark.parametrize(
    "config",
    [{"trust": True}, {"runtime": "subprocess:Popen"}, {"runtime": "os:system"}],
)
def test_config_override_cannot_grant_trust_or_import_modules(
    server: RunningServer, layout: dict[str, Path], config: dict[str, object]
) -> None:
    with httpx.Client(base_url=f"http://{server.url}") as client:
        reply = client.post(
            "/v2/repository/models/pickled/load",
            json={"parameters": {"config": json.dumps(config)}},
        )
        assert reply.status_code == 400
        assert "model.yaml on disk" in reply.json()["error"]
    assert not (layout["markers"] / "unpickled").exists()


def test_pickle_without_trust_is_never_opened(
    server: RunningServer, layout: dict[str, Path]
) -> None:
    with httpx.Client(base_url=f"http://{server.url}") as client:
        reply = client.post("/v2/repository/models/pickled/load")
        assert reply.status_code == 400
        assert "trust" in reply.json()["error"] and "pickle" in reply.json()["error"]
        rows = {r["name"]: r for r in client.post("/v2/repository/index").json()}
        assert rows["pickled"]["state"] == "UNAVAILABLE" and "trust" in rows["pickled"]["reason"]
        assert client.get("/v2/models/iris_onnx/ready").status_code == 200
    assert not (layout["markers"] / "unpickled").exists()


def test_links_out_of_a_version_or_model_folder_are_refused_and_reasons_are_relative(
    model_repo: Path, tmp_path: Path, serve: Servers
) -> None:
    """Found by default or named, an artifact (or a python model's module) whose real path
    leaves its folder is refused with a reason; a link that stays inside is fine. Reasons name
    files relative to the repository, never by the server's absolute paths."""
    repo, outside, markers = tmp_path / "repo", tmp_path / "outside", tmp_path / "markers"
    markers.mkdir()
    onnx = model_repo / "iris_onnx" / "1" / "model.onnx"
    (outside / "pkg").mkdir(parents=True)
    shutil.copy(onnx, outside / "secret.onnx")
    module = PYTHON_MODEL.format(marker=str(markers / "outside"))
    (outside / "model.py").write_text(module)
    (outside / "pkg" / "__init__.py").write_text(module)
    (repo / "default_link" / "1").mkdir(parents=True)  # no artifact: key, found by its suffix
    os.symlink(outside / "secret.onnx", repo / "default_link" / "1" / "model.onnx")
    (repo / "inside_link" / "1").mkdir(parents=True)
    shutil.copy(onnx, repo / "inside_link" / "1" / "real.bin")
    os.symlink("real.bin", repo / "inside_link" / "1" / "model.onnx")
    for name, entrypoint in (("module_link", "model:Model"), ("package_link", "pkg:Model")):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "model.yaml").write_text(f"runtime: python\nentrypoint: {entrypoint}\n")
    os.symlink(outside / "model.py", repo / "module_link" / "model.py")
    os.symlink(outside / "pkg", repo / "package_link" / "pkg")
    (repo / "bad_yaml" / "1").mkdir(parents=True)
    (repo / "bad_yaml" / "model.yaml").write_text("max_batch_size: -3\n")
    running = serve(repo)
    with httpx.Client(base_url=running.http) as client:
        rows = {r["name"]: r for r in client.post("/v2/repository/index").json()}
        assert client.get("/v2/models/inside_link/ready").status_code == 200
        refused = client.post("/v2/models/default_link/infer", json={"inputs": []}).json()
    for name in ("default_link", "module_link", "package_link"):
        assert rows[name]["state"] == "UNAVAILABLE", rows[name]
        assert "leads outside" in rows[name]["reason"], rows[name]
    assert rows["default_link"]["reason"].startswith("artifact 'model.onnx' (a symbolic link)")
    assert "default_link/1" in rows["default_link"]["reason"]
    assert rows["bad_yaml"]["reason"].startswith("bad_yaml/model.yaml:"), rows["bad_yaml"]
    assert not (markers / "outside").exists(), "a module outside the repository was imported"
    for text in [r["reason"] for r in rows.values()] + [refused["error"]]:
        assert str(tmp_path) not in text and str(tmp_path.resolve()) not in text, text
