"""Stateful sequences: a running-sum model (as Triton's simple_sequence) driven by tritonclient's
own sequence calls, unmodified: sync over REST and gRPC, and gRPC streaming; sequences that were
never started, that went idle, or that reach another worker process are refused clearly."""

from __future__ import annotations

import queue
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.harness import CliProcess, Servers, write_python_model

ACCUMULATE = """
import numpy as np

class Accumulate:
    inputs = [{"name": "INPUT", "datatype": "INT32", "shape": [1]}]
    outputs = [{"name": "OUTPUT", "datatype": "INT32", "shape": [1]}]

    def predict(self, inputs, sequence):
        if sequence.start:
            sequence.state["sum"] = 0
        sequence.state["sum"] += int(inputs["INPUT"][0])
        return {"OUTPUT": np.array([sequence.state["sum"]], dtype=np.int32)}
"""

CONFIG = {
    "max_batch_size": 0,
    "instances": 2,
    "sequence_batching": {"max_sequence_idle_us": 30_000_000},
}
SHORT_IDLE = {**CONFIG, "sequence_batching": {"max_sequence_idle_us": 300_000}}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, serve_module: Servers) -> Any:
    repo = tmp_path_factory.mktemp("sequences")
    write_python_model(repo, "accumulate", ACCUMULATE, CONFIG, entrypoint="Accumulate")
    write_python_model(repo, "short_idle", ACCUMULATE, SHORT_IDLE, entrypoint="Accumulate")
    pbtxt = repo / "accumulate_pbtxt"
    (pbtxt / "1").mkdir(parents=True)
    (pbtxt / "model.py").write_text((repo / "accumulate" / "model.py").read_text())
    (pbtxt / "config.pbtxt").write_text(
        'backend: "python"\nmax_batch_size: 0\n'
        'input [ { name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        'output [ { name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        "sequence_batching { max_sequence_idle_microseconds: 5000000 oldest { } }\n"
        'parameters { key: "entrypoint" value: { string_value: "model:Accumulate" } }\n'
    )
    return serve_module(repo)


def value(module: Any, number: int) -> list[Any]:
    tensor = module.InferInput("INPUT", [1], "INT32")
    tensor.set_data_from_numpy(np.array([number], dtype=np.int32))
    return [tensor]


@pytest.mark.parametrize("transport", ["rest", "grpc"])
@pytest.mark.parametrize("model", ["accumulate", "accumulate_pbtxt"])
def test_interleaved_sequences_keep_their_own_sums(
    running: Any, transport: str, model: str
) -> None:
    module: Any = httpclient if transport == "rest" else grpcclient
    client = module.InferenceServerClient(running.url if transport == "rest" else running.grpc_url)
    ids: tuple[int | str, int | str] = (1000 + len(transport), f"seq-{transport}-{model}")
    sums = {ids[0]: 0, ids[1]: 0}
    steps = [(0, 5), (1, 100), (0, 7), (1, 1), (0, -2), (1, 10)]
    for index, (which, number) in enumerate(steps):
        seq_id = ids[which]
        result = client.infer(
            model,
            value(module, number),
            sequence_id=seq_id,
            sequence_start=index < 2,
            sequence_end=index >= len(steps) - 2,
        )
        sums[seq_id] += number
        assert result.as_numpy("OUTPUT").tolist() == [sums[seq_id]]
    for seq_id in ids:  # both ended: their state is gone
        with pytest.raises(InferenceServerException, match="must specify the START flag"):
            client.infer(model, value(module, 1), sequence_id=seq_id)
    client.close()


def test_grpc_streaming_sequences_answer_in_order(running: Any) -> None:
    client = grpcclient.InferenceServerClient(running.grpc_url)
    answers: queue.Queue[Any] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    numbers = list(range(1, 21))
    for index, number in enumerate(numbers):
        for seq_id in (7, "stream"):
            client.async_stream_infer(
                "accumulate",
                value(grpcclient, number if seq_id == 7 else -number),
                request_id=f"{seq_id}-{index}",
                sequence_id=seq_id,
                sequence_start=index == 0,
                sequence_end=index == len(numbers) - 1,
            )
    got: dict[str, int] = {}
    for _ in range(2 * len(numbers)):
        result, error = answers.get(timeout=30)
        assert error is None, error
        got[result.get_response().id] = int(result.as_numpy("OUTPUT")[0])
    client.stop_stream()
    client.close()
    for index in range(len(numbers)):
        total = sum(numbers[: index + 1])
        assert got[f"7-{index}"] == total and got[f"stream-{index}"] == -total


def test_bad_sequence_requests_are_refused_clearly(running: Any) -> None:
    client = httpclient.InferenceServerClient(running.url)
    with pytest.raises(InferenceServerException, match="non-zero or non-empty correlation ID"):
        client.infer("accumulate", value(httpclient, 1))
    with pytest.raises(InferenceServerException, match=r"sequence 424242 .* START flag"):
        client.infer("accumulate", value(httpclient, 1), sequence_id=424242)
    client.infer("short_idle", value(httpclient, 1), sequence_id=99, sequence_start=True)
    time.sleep(0.6)  # longer than max_sequence_idle_us (0.3 s): the sequence is dropped
    with pytest.raises(InferenceServerException, match="idle longer than max_sequence_idle_us"):
        client.infer("short_idle", value(httpclient, 1), sequence_id=99)
    config = client.get_model_config("accumulate_pbtxt")
    assert config["sequence_batching"]["max_sequence_idle_microseconds"] == 5000000
    client.close()


def test_with_workers_a_sequence_never_runs_on_a_fresh_state(tmp_path: Path) -> None:
    write_python_model(tmp_path, "accumulate", ACCUMULATE, CONFIG, entrypoint="Accumulate")
    args = ["serve", str(tmp_path), "--http-port", "0", "--grpc-port", "0", "--workers", "2"]
    with CliProcess(args) as cli:
        cli.wait_for("server ready", timeout=90, count=2)
        port = int(cli.wait_for(r"HTTP port (\d+)").group(1))
        url = f"http://127.0.0.1:{port}/v2/models/accumulate/infer"

        def send(number: int, start: bool) -> httpx.Response:
            body = {
                "inputs": [{"name": "INPUT", "datatype": "INT32", "shape": [1], "data": [number]}],
                "parameters": {"sequence_id": 5, "sequence_start": start},
            }
            return httpx.post(url, json=body)  # a new connection each time

        assert send(1, True).status_code == 200
        total, refused = 1, 0
        for _ in range(12):
            reply = send(1, False)
            if reply.status_code == 200:
                total += 1
                assert reply.json()["outputs"][0]["data"] == [total]
            else:
                assert reply.status_code == 400
                assert "started on another worker process" in reply.json()["error"]
                refused += 1
        assert total + refused == 13
