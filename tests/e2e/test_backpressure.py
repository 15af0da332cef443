"""Backpressure and deadlines through the real REST server: 503 + Retry-After, 504, batching."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import httpx
import pytest

from modelserve.protocol import grpc_service_pb2 as pb
from tests.conftest import RunningServer, Servers
from tests.harness import wait_for_queue, wait_for_running, write_python_model

SLOW_MODEL = """
import threading, time
from pathlib import Path
import numpy as np

class Slow:
    calls = []
    lock = threading.Lock()

    def predict(self, inputs):
        x = inputs["x"]
        with self.lock:
            Slow.calls.append(x[:, 0].tolist())
        if x[0, 1] < 0:  # held until the test opens the gate named by its tag
            gate = Path(__file__).parent / f"open-{int(x[0, 0])}"
            deadline = time.monotonic() + 60
            while not gate.exists() and time.monotonic() < deadline:
                time.sleep(0.005)
        else:
            time.sleep(float(x[0, 1]))
        return {"y": x * 2, "rows": np.full((x.shape[0], 1), x.shape[0], dtype=np.int32)}
"""


def _model(repo: Path, name: str, **extra: object) -> None:
    config = {
        "max_batch_size": 32,
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
        "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [-1, 2]},
            {"name": "rows", "datatype": "INT32", "shape": [-1, 1]},
        ],
        **extra,
    }
    write_python_model(repo, name, SLOW_MODEL, config, entrypoint="Slow")


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory, serve_module: Servers) -> RunningServer:
    repo = tmp_path_factory.mktemp("slow")
    _model(repo, "bounded", max_queue_size=2)
    _model(repo, "timed", default_timeout_ms=100)
    _model(repo, "batched", dynamic_batching={"max_queue_delay_us": 0})
    return serve_module(repo)


HELD = -1.0
"""The sleep value that holds a request in the model until ``_open(server, model, tag)``."""


async def _queued(server: RunningServer, model: str, depth: int) -> None:
    await asyncio.to_thread(wait_for_queue, server.http, model, depth)


async def _running(server: RunningServer, model: str) -> None:
    await asyncio.to_thread(wait_for_running, server.http, model)


def _open(server: RunningServer, model: str, tag: int) -> None:
    (server.settings.model_repository / model / f"open-{tag}").touch()


def _body(tag: float, sleep: float, timeout_us: int | None = None) -> dict[str, object]:
    body: dict[str, object] = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [tag, sleep]}]
    }
    if timeout_us is not None:
        body["parameters"] = {"timeout": timeout_us}
    return body


async def test_full_queue_gets_503_with_retry_after(slow_server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=f"http://{slow_server.url}", timeout=30) as client:
        url = "/v2/models/bounded/infer"
        busy = asyncio.ensure_future(client.post(url, json=_body(1, HELD)))
        await _running(slow_server, "bounded")
        queued = [asyncio.ensure_future(client.post(url, json=_body(2, 0))) for _ in range(2)]
        await _queued(slow_server, "bounded", 2)
        refused = await client.post(url, json=_body(3, 0))
        _open(slow_server, "bounded", 1)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert "queue is full" in refused.json()["error"]
        assert [r.status_code for r in await asyncio.gather(busy, *queued)] == [200, 200, 200]


async def test_request_expiring_in_queue_gets_504_and_is_not_run(
    slow_server: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=f"http://{slow_server.url}", timeout=30) as client:
        url = "/v2/models/timed/infer"
        busy = asyncio.ensure_future(client.post(url, json=_body(11, HELD, timeout_us=60_000_000)))
        await _running(slow_server, "timed")
        expired = await client.post(url, json=_body(12, 0))  # default 100 ms timeout
        short = await client.post(url, json=_body(13, 0, timeout_us=20_000))
        _open(slow_server, "timed", 11)
        assert expired.status_code == 504
        assert "error" in expired.json()
        assert short.status_code == 504
        assert (await busy).status_code == 200
        check = await client.post(url, json=_body(14, 0))
        assert check.status_code == 200
        bad = await client.post(url, json=_body(15, 0, timeout_us=-5))
        assert bad.status_code == 400


async def test_concurrent_requests_are_batched(slow_server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=f"http://{slow_server.url}", timeout=30) as client:
        url = "/v2/models/batched/infer"
        busy = asyncio.ensure_future(client.post(url, json=_body(1, HELD)))
        await _running(slow_server, "batched")
        waiting = [
            asyncio.ensure_future(client.post(url, json=_body(float(i), 0))) for i in range(2, 8)
        ]
        await _queued(slow_server, "batched", 6)
        _open(slow_server, "batched", 1)
        replies = await asyncio.gather(*waiting)
        await busy
    for i, reply in enumerate(replies, start=2):
        outputs = {o["name"]: o["data"] for o in reply.json()["outputs"]}
        assert outputs["y"] == [2.0 * i, 0.0]
        assert outputs["rows"] == [6], "the six queued requests ran as one batch"


async def test_full_queue_refuses_before_decoding_the_body(slow_server: RunningServer) -> None:
    """A body that would not even decode gets the 503 of the full queue: the queue is checked
    first, so a flood of large bodies at a full queue costs no decoding."""
    async with httpx.AsyncClient(base_url=f"http://{slow_server.url}", timeout=30) as client:
        url = "/v2/models/bounded/infer"
        busy = asyncio.ensure_future(client.post(url, json=_body(4, HELD)))
        await _running(slow_server, "bounded")
        queued = [asyncio.ensure_future(client.post(url, json=_body(2, 0))) for _ in range(2)]
        await _queued(slow_server, "bounded", 2)
        refused = await client.post(url, content=b'{"inputs": [' + b"1," * 100_000)
        _open(slow_server, "bounded", 4)
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "1"
        assert [r.status_code for r in await asyncio.gather(busy, *queued)] == [200, 200, 200]


async def test_grpc_full_queue_refuses_before_decoding(slow_server: RunningServer) -> None:
    """gRPC too: with the queue full, even an input that would not decode is refused with
    RESOURCE_EXHAUSTED and retry-after metadata, not looked at."""
    undecodable = pb.ModelInferRequest(
        model_name="bounded",
        inputs=[pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 2])],
        raw_input_contents=[b"\x00"],  # 1 byte for 2 FP32 elements
    )
    async with httpx.AsyncClient(base_url=f"http://{slow_server.url}", timeout=30) as client:
        url = "/v2/models/bounded/infer"
        busy = asyncio.ensure_future(client.post(url, json=_body(5, HELD)))
        await _running(slow_server, "bounded")
        queued = [asyncio.ensure_future(client.post(url, json=_body(2, 0))) for _ in range(2)]
        await _queued(slow_server, "bounded", 2)
        async with grpc.aio.insecure_channel(slow_server.grpc_url) as channel:
            call = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer",
                request_serializer=pb.ModelInferRequest.SerializeToString,
                response_deserializer=pb.ModelInferResponse.FromString,
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call(undecodable, timeout=10)
        _open(slow_server, "bounded", 5)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        trailing = dict(refused.value.trailing_metadata() or ())
        assert trailing["retry-after"] == "1", "REST's Retry-After, as trailing metadata"
        assert len(trailing["x-request-id"]) == 32
        assert [r.status_code for r in await asyncio.gather(busy, *queued)] == [200, 200, 200]


PICKY_MODEL = """
import time
import numpy as np

class Model:
    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}]
    outputs = [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}]

    def predict(self, inputs):
        x = inputs["x"]
        if (x[:, 0] < 0).any():
            raise ValueError("negative input")
        time.sleep(float(x[:, 1].max()))
        return {"y": x[:, :1] * 2}
"""


@pytest.mark.parametrize("execution", ["thread", "process"])
async def test_one_bad_input_in_a_dynamic_batch_fails_only_its_request(
    tmp_path: Path, serve: Servers, execution: str
) -> None:
    config = {
        "max_batch_size": 16,
        "dynamic_batching": {"max_queue_delay_us": 0},
        "execution": execution,
    }
    write_python_model(tmp_path, "picky", PICKY_MODEL, config)
    running = serve(tmp_path)
    async with httpx.AsyncClient(base_url=running.http, timeout=30) as client:
        url = "/v2/models/picky/infer"
        busy = asyncio.ensure_future(client.post(url, json=_body(1, 0.5)))
        await asyncio.sleep(0.2)  # the next three queue up behind it and run as one batch
        replies = await asyncio.gather(
            *(client.post(url, json=_body(tag, 0)) for tag in (2, -3, 4))
        )
        assert (await busy).status_code == 200
    assert [r.status_code for r in replies] == [200, 400, 200], [r.text for r in replies]
    assert "negative input" in replies[1].json()["error"]
    assert [r.json()["outputs"][0]["data"] for r in (replies[0], replies[2])] == [[4.0], [8.0]]
