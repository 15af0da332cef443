"""Shared fixtures: the example model repository built at test time, and a real server
listening on 127.0.0.1 on a free port, run in a background thread with its own event loop."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelserve.config.settings import Settings
from modelserve.server.compose import Server

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "models"


def _load_builder():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "build_examples", ROOT / "examples" / "build_examples.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RunningServer:
    """A real modelserve Server on 127.0.0.1:0 in a thread; ``url`` is its HTTP address."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="modelserve-test", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced to the test thread
            self._error = exc
            self._started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.server = Server(self.settings)
        await self.server.start()
        self._started.set()
        await self._stop.wait()
        await self.server.stop()

    def start(self) -> RunningServer:
        self._thread.start()
        self._started.wait(timeout=60)
        if self._error is not None:
            raise self._error
        assert self.server is not None
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.http_port

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def grpc_url(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.grpc_port}"


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
