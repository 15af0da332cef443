"""Shared fixtures: the example model repository built at test time, a real server listening on
127.0.0.1 on a free port (``server``, shared by the session), and ``serve(**settings)`` for a
test's own server (ports 0, stopped at the end of the test). The harness itself is
tests/harness.py."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelserve.config.settings import Settings
from tests.harness import ROOT, RunningServer

__all__ = ["ALL_DATATYPES", "ECHO_MODEL", "ROOT", "RunningServer", "add_echo_models"]

EXAMPLES = ROOT / "examples" / "models"


def _load_builder():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "build_examples", ROOT / "examples" / "build_examples.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ALL_DATATYPES = (
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
)  # fmt: skip

ECHO_MODEL = """
class Echo:
    def predict(self, inputs):
        return {"OUT": inputs["IN"]}
"""


def add_echo_models(repo: Path) -> None:
    """One python model per datatype, echoing IN [-1, -1] to OUT: for datatype round trips."""
    for datatype in ALL_DATATYPES:
        folder = repo / f"echo_{datatype.lower()}"
        (folder / "1").mkdir(parents=True, exist_ok=True)
        (folder / "echo.py").write_text(ECHO_MODEL)
        (folder / "model.yaml").write_text(
            "runtime: python\nentrypoint: echo:Echo\nmax_batch_size: 8\n"
            f"inputs: [{{name: IN, datatype: {datatype}, shape: [-1, -1]}}]\n"
            f"outputs: [{{name: OUT, datatype: {datatype}, shape: [-1, -1]}}]\n"
        )


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of examples/models with every artifact built from fixed seeds, plus echo models."""
    repo = tmp_path_factory.mktemp("models")
    shutil.copytree(EXAMPLES, repo, dirs_exist_ok=True)
    assert _load_builder().main([str(repo)]) == 0
    add_echo_models(repo)
    return repo


@pytest.fixture(scope="session")
def server(model_repo: Path) -> Iterator[RunningServer]:
    running = RunningServer(
        Settings(
            model_repository=model_repo, http_port=0, grpc_port=0, max_request_bytes=1024 * 1024
        )
    ).start()
    yield running
    running.stop()


Serve = Callable[..., RunningServer]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """``serve(repo, **settings)``: a real server of ``repo`` on 127.0.0.1 with ports 0 and the
    given settings, started in-process; every one started is stopped when the test ends."""
    started: list[RunningServer] = []

    def start(repo: Path, **settings: Any) -> RunningServer:
        values: dict[str, Any] = {"http_port": 0, "grpc_port": 0, **settings}
        running = RunningServer(Settings(model_repository=repo, **values)).start()
        started.append(running)
        return running

    yield start
    for running in reversed(started):
        running.stop()
