"""Client.local: the client's API on a repository served in this process, with no server: the
same answers as a running server, model.yaml and batching applied, the same errors."""

from __future__ import annotations

import gc
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelserve.client import (
    AsyncClient,
    Client,
    ClientError,
    InvalidInputError,
    NotFoundError,
    UnavailableError,
    UnsupportedError,
)
from tests.conftest import RunningServer
from tests.harness import write_python_model

X = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]])

GATED = """
import time
from pathlib import Path
import numpy as np

class Gated:
    def load(self, version_dir, parameters):
        self.gate = Path(parameters["gate"])
        self.started = Path(parameters["started"])

    def predict(self, inputs):
        x = inputs["x"]
        self.started.touch()
        while not self.gate.exists():
            time.sleep(0.005)
        return {"y": x * 2, "rows": np.full((x.shape[0], 1), x.shape[0], dtype=np.int32)}
"""


@pytest.fixture(scope="module")
def local(model_repo: Path) -> Iterator[Client]:
    models = ["iris_onnx", "iris_sklearn", "python_add", "echo_bytes"]
    with Client.local(model_repo, load_models=models, model_control_mode="explicit") as client:
        yield client


def test_same_answers_as_the_server(local: Client, server: RunningServer) -> None:
    with Client(server.http) as remote:
        for data in (X, X.tolist(), pd.DataFrame(X, columns=list("abcd"))):
            here, there = local.predict("iris_onnx", data), remote.predict("iris_onnx", data)
            assert type(here) is type(there)
            if isinstance(here, pd.DataFrame):
                pd.testing.assert_frame_equal(here, there)
            elif isinstance(here, list):
                assert here == there
            else:
                assert list(here) == list(there)
                for name in here:
                    np.testing.assert_array_equal(here[name], there[name])
    out = local.predict("iris_onnx", X, id="in-process-1")
    assert out.id == "in-process-1" and out.model_version == "1"
    assert local.protocol == "local"


def test_model_calls_and_bytes(local: Client) -> None:
    assert local.live() and local.ready() and local.ready("iris_onnx")
    assert [s.name for s in local.metadata("iris_sklearn").outputs] == ["label", "probabilities"]
    ready = {m.name for m in local.models(ready_only=True)}
    assert ready == {"iris_onnx", "iris_sklearn", "python_add", "echo_bytes"}
    echoed = local.predict("echo_bytes", {"IN": np.array([["a", "é"]])})
    assert echoed["OUT"].tolist() == [[b"a", "é".encode()]]


def test_errors_are_the_servers(local: Client) -> None:
    with pytest.raises(NotFoundError, match="no_such_model"):
        local.predict("no_such_model", X)
    with pytest.raises(InvalidInputError, match="no input 'nope'"):
        local.predict("iris_onnx", {"nope": X})
    with pytest.raises(InvalidInputError, match="batch"):
        local.predict("iris_onnx", np.tile(X, (30, 1)))  # max_batch_size 64 in model.yaml
    with pytest.raises(UnavailableError, match="no READY version"):
        local.predict("iris_xgboost", X)
    with pytest.raises(UnsupportedError, match="local client has no server"):
        local.monitoring("iris_onnx")


def test_load_and_unload(local: Client) -> None:
    local.load("iris_xgboost")
    assert local.predict("iris_xgboost", X).shape == (3,)
    local.unload("iris_xgboost")
    assert not local.ready("iris_xgboost")


def test_batching_applies(tmp_path: Path) -> None:
    """The first request holds the model until the gate opens; the four sent meanwhile wait in
    its queue and run as batches (the model answers each request its batch's size)."""
    gate, started = tmp_path / "gate", tmp_path / "started"
    config = {
        "max_batch_size": 8,
        "execution": "thread",
        "dynamic_batching": {"max_queue_delay_us": 0},
        "parameters": {"gate": str(gate), "started": str(started)},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}],
        "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [-1, 1]},
            {"name": "rows", "datatype": "INT32", "shape": [-1, 1]},
        ],
    }
    write_python_model(tmp_path / "repo", "gated", GATED, config, entrypoint="Gated")
    with Client.local(tmp_path / "repo") as client:
        results: list[Any] = []
        threads = [
            threading.Thread(target=lambda i=i: results.append(client.predict("gated", [[i]])))
            for i in range(5)
        ]
        threads[0].start()
        deadline = time.monotonic() + 30
        while not started.exists():
            assert time.monotonic() < deadline, "the first request never reached the model"
            time.sleep(0.01)
        for thread in threads[1:]:
            thread.start()
        time.sleep(1.0)  # the four reach the queue (a loose wait: only batching is asserted)
        gate.touch()
        for thread in threads:
            thread.join(30)
    assert sorted(row[0]["y"] for row in results) == [0.0, 2.0, 4.0, 6.0, 8.0]
    sizes = [row[0]["rows"] for row in results]
    assert max(sizes) >= 2, f"requests queued behind a busy model run together: {sizes}"


def test_closed_client_refuses(model_repo: Path) -> None:
    client = Client.local(model_repo, load_models=["iris_onnx"])
    assert client.predict("iris_onnx", X[:1], outputs=["label"]).shape == (1,)
    client.close()
    client.close()
    with pytest.raises(ClientError, match="closed"):
        client.predict("iris_onnx", X[:1])


def test_bad_settings_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not a directory"):
        Client.local(tmp_path / "missing")
    with pytest.raises(ValueError, match="model_control_mode"):
        Client.local(tmp_path, model_control_mode="sometimes")


def test_a_failed_start_closes_its_event_loop(tmp_path: Path) -> None:
    """The engine's loop is closed when the models cannot load, not left to the garbage
    collector (which reported 'unclosed event loop' in whichever test ran next)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(ValueError, match="is not a directory"):
            Client.local(tmp_path / "missing")
        gc.collect()
    assert not [w for w in caught if "unclosed event loop" in str(w.message)]


async def test_async_local(model_repo: Path) -> None:
    client = await AsyncClient.local(model_repo, load_models=["iris_onnx"])
    async with client:
        out = await client.predict("iris_onnx", X)
        assert out["label"].shape == (3,) and await client.ready("iris_onnx")
