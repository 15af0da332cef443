"""Decoupled models: a python model that yields zero, one or many responses per request, streamed
to tritonclient's gRPC stream in order with the request id and, when asked, the final-response
flag; unary calls to it are refused clearly over both transports."""

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
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from tests.harness import Servers, write_python_model

COUNTDOWN = """
import numpy as np

class Countdown:
    inputs = [{"name": "N", "datatype": "INT32", "shape": [1]}]
    outputs = [{"name": "TOKEN", "datatype": "INT32", "shape": [1]}]

    def predict(self, inputs):
        n = int(inputs["N"][0])
        if n < 0:
            raise ValueError("N must be >= 0")
        for left in range(n, 0, -1):
            yield {"TOKEN": np.array([left], dtype=np.int32)}
"""


HELD = """
import os
import time

import numpy as np

class Held:
    inputs = [{"name": "N", "datatype": "INT32", "shape": [1]}]
    outputs = [{"name": "TOKEN", "datatype": "INT32", "shape": [1]}]

    def predict(self, inputs):
        yield {"TOKEN": np.array([1], dtype=np.int32)}
        release = os.path.join(os.path.dirname(__file__), "release")
        deadline = time.monotonic() + 30
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.01)
        yield {"TOKEN": np.array([2], dtype=np.int32)}
"""


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, serve_module: Servers) -> Any:
    repo = tmp_path_factory.mktemp("decoupled")
    config = {"max_batch_size": 0, "decoupled": True, "instances": 2}
    write_python_model(repo, "countdown", COUNTDOWN, config, entrypoint="Countdown")
    write_python_model(repo, "held", HELD, config, entrypoint="Held")
    return serve_module(repo)


def inflight(base_url: str) -> float:
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "modelserve_inflight_requests"
    )


def number(module: Any, n: int) -> list[Any]:
    tensor = module.InferInput("N", [1], "INT32")
    tensor.set_data_from_numpy(np.array([n], dtype=np.int32))
    return [tensor]


def test_zero_one_and_many_responses_stream_in_order(running: Any) -> None:
    client = grpcclient.InferenceServerClient(running.grpc_url)
    answers: queue.Queue[Any] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    for n in (3, 0, 1, -1):
        client.async_stream_infer(
            "countdown", number(grpcclient, n), request_id=f"r{n}", enable_empty_final_response=True
        )
    got: list[tuple[str, int | None, bool]] = []
    while len([g for g in got if g[2] or g[1] == -1]) < 4:
        result, error = answers.get(timeout=30)
        if error is not None:
            assert "N must be >= 0" in str(error)
            got.append(("r-1", -1, False))
            continue
        response = result.get_response()
        final = response.parameters["triton_final_response"].bool_param
        tokens = result.as_numpy("TOKEN")
        got.append((response.id, None if tokens is None else int(tokens[0]), final))
    client.stop_stream()
    client.close()
    assert got == [
        ("r3", 3, False),
        ("r3", 2, False),
        ("r3", 1, False),
        ("r3", None, True),
        ("r0", None, True),
        ("r1", 1, False),
        ("r1", None, True),
        ("r-1", -1, False),
    ]


def test_without_the_final_flag_only_the_responses_come(running: Any) -> None:
    client = grpcclient.InferenceServerClient(running.grpc_url)
    answers: queue.Queue[Any] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    client.async_stream_infer("countdown", number(grpcclient, 2), request_id="a")
    tokens = [int(answers.get(timeout=30)[0].as_numpy("TOKEN")[0]) for _ in range(2)]
    client.stop_stream()
    client.close()
    assert tokens == [2, 1] and answers.empty()


@pytest.mark.parametrize("module", [httpclient, grpcclient])
def test_a_unary_call_is_refused(running: Any, module: Any) -> None:
    url = running.url if module is httpclient else running.grpc_url
    client = module.InferenceServerClient(url)
    with pytest.raises(InferenceServerException, match="decoupled transaction policy"):
        client.infer("countdown", number(module, 2))
    config = client.get_model_config("countdown")
    config = config if module is httpclient else config.config
    decoupled = (
        config["model_transaction_policy"]["decoupled"]
        if module is httpclient
        else config.model_transaction_policy.decoupled
    )
    assert decoupled is True
    client.close()


def test_a_stream_in_progress_counts_as_in_flight(running: Any) -> None:
    """modelserve_inflight_requests counts a decoupled request from its arrival until its last
    response is out, as it counts a unary one."""
    client = grpcclient.InferenceServerClient(running.grpc_url)
    answers: queue.Queue[Any] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        client.async_stream_infer("held", number(grpcclient, 1), request_id="held")
        result, error = answers.get(timeout=30)
        assert error is None and int(result.as_numpy("TOKEN")[0]) == 1
        assert inflight(running.http) == 1  # the first response is out, the second is not
        (Path(running.settings.model_repository) / "held" / "release").touch()
        result, error = answers.get(timeout=30)
        assert error is None and int(result.as_numpy("TOKEN")[0]) == 2
    finally:
        client.stop_stream()
        client.close()
    deadline = time.monotonic() + 10
    while inflight(running.http) != 0:
        assert time.monotonic() < deadline, "the finished stream is still counted"
        time.sleep(0.02)
