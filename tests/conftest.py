"""Shared fixtures: the example model repository built at test time (``model_repo``), a real
server of it on 127.0.0.1 shared by the session (``server``), and ``serve(repo, **settings)``
for a test's own server (ports 0, stopped at the end of the test); ``serve_module`` and
``serve_session`` start servers that live as long as a module's or the session's fixtures. The
harness itself is tests/harness.py."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ROOT, RunningServer, Servers, example_builder, write_python_model

__all__ = [
    "ALL_DATATYPES",
    "ECHO_MODEL",
    "ROOT",
    "RunningServer",
    "Servers",
    "add_echo_models",
    "echo_config",
]

EXAMPLES = ROOT / "examples" / "models"


ALL_DATATYPES = (
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
)  # fmt: skip

ECHO_MODEL = """
class Echo:
    def predict(self, inputs):
        return {"OUT": inputs["IN"]}
"""


def echo_config(datatype: str, **extra: object) -> dict[str, object]:
    """model.yaml of an echo model: IN [-1, -1] to OUT of ``datatype``, batches of up to 8."""
    return {
        "max_batch_size": 8,
        "inputs": [{"name": "IN", "datatype": datatype, "shape": [-1, -1]}],
        "outputs": [{"name": "OUT", "datatype": datatype, "shape": [-1, -1]}],
        **extra,
    }


def add_echo_models(repo: Path) -> None:
    """One python model per datatype, echoing IN [-1, -1] to OUT: for datatype round trips."""
    for datatype in ALL_DATATYPES:
        write_python_model(
            repo, f"echo_{datatype.lower()}", ECHO_MODEL, echo_config(datatype), entrypoint="Echo"
        )


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of examples/models with every artifact built from fixed seeds, plus echo models.
    The build writes nothing in the checkout: its sample image is ``part_image``."""
    repo = tmp_path_factory.mktemp("models")
    shutil.copytree(EXAMPLES, repo, dirs_exist_ok=True)
    image = tmp_path_factory.getbasetemp() / "images" / "part.jpg"
    assert example_builder().main(["--image", str(image), str(repo)]) == 0
    add_echo_models(repo)
    return repo


@pytest.fixture(scope="session")
def part_image(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/images/part.jpg as the example build writes it (for the tests: in a temporary
    folder, not in the checkout)."""
    return tmp_path_factory.getbasetemp() / "images" / "part.jpg"


@pytest.fixture(scope="session")
def serve_session() -> Iterator[Servers]:
    """``serve`` for servers shared by the whole session (per xdist worker)."""
    servers = Servers()
    yield servers
    servers.stop_all()


@pytest.fixture(scope="session")
def server(model_repo: Path, serve_session: Servers) -> RunningServer:
    """The examples and echo models, shared by every test that only reads."""
    return serve_session(model_repo, max_request_bytes=1024 * 1024)


@pytest.fixture(scope="module")
def serve_module() -> Iterator[Servers]:
    """``serve`` for a server a test module shares: started by a module-scoped fixture,
    stopped when the module's tests are done."""
    servers = Servers()
    yield servers
    servers.stop_all()


@pytest.fixture
def serve() -> Iterator[Servers]:
    """``serve(repo, **settings)``: a real server of ``repo`` on 127.0.0.1 with ports 0 and the
    given settings, started in-process; every one started is stopped when the test ends."""
    servers = Servers()
    yield servers
    servers.stop_all()
