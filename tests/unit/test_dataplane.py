"""DataPlane, the one entry point both transports call, on a real repository, router and
lifecycle over a temporary repository, with no server: health, metadata, config, index,
inference with its checks, statistics and metrics, load and unload, draining."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from modelserve.errors import (
    ErrorCode,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from modelserve.types import ModelState
from tests.unit.observability.metric_samples import sample_key, samples_of
from tests.unit.serving_stack import (
    Stack,
    open_stack,
    scale_config,
    scale_request,
    write_scale_model,
)


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    return tmp_path / "marks"


@pytest.fixture
def repo(tmp_path: Path, marks: Path) -> Path:
    """``scale`` versions 1 and 2 (both served, 1 the default), ``bounded`` with a queue of
    one, and ``bad``, whose model.yaml is refused."""
    repo = tmp_path / "repo"
    write_scale_model(
        repo, marks, "scale", (1, 2), version_policy={"all": True}, default_version="1"
    )
    write_scale_model(repo, marks, "bounded", (1,), max_queue_size=1)
    (repo / "bad" / "1").mkdir(parents=True)
    (repo / "bad" / "model.yaml").write_text("max_batch_size: -3\n")
    return repo


@pytest.fixture
async def stack(repo: Path, marks: Path) -> AsyncIterator[Stack]:
    opened = await open_stack(repo, mode="explicit", names=["scale", "bounded", "bad"])
    yield opened
    (marks / "hold").unlink(missing_ok=True)
    await opened.close()


async def metrics(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = await stack.observability.exposition()
    return samples_of(body.decode())


async def until(path: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        await asyncio.sleep(0.005)


# ---- health, metadata, config, index -------------------------------------------------------


async def test_health_and_server_metadata(stack: Stack) -> None:
    dataplane = stack.dataplane
    assert dataplane.live() and dataplane.ready() and dataplane.accepting
    dataplane.set_ready(False)
    assert not dataplane.ready()
    meta = dataplane.server_metadata()
    assert (meta.name, meta.version) == ("modelserve", "9.9.9")
    assert {"binary_tensor_data", "model_repository", "statistics"} <= set(meta.extensions)


async def test_model_readiness_and_metadata(stack: Stack) -> None:
    dataplane = stack.dataplane
    assert dataplane.model_ready("scale") and dataplane.model_ready("scale", "2")
    assert not dataplane.model_ready("bad"), "known, but nothing serves"
    with pytest.raises(NotFound, match="Request for unknown model: 'nope' is not found"):
        dataplane.model_ready("nope")
    with pytest.raises(NotFound, match="no version '7'"):
        dataplane.model_ready("scale", "7")
    meta = dataplane.model_metadata("scale")
    assert (meta.name, meta.versions, meta.platform) == ("scale", ("1", "2"), "python")
    assert [(t.name, t.datatype, t.shape) for t in meta.inputs] == [("x", "FP32", (-1, 2))]
    assert [t.name for t in meta.outputs] == ["y", "rows"]
    assert dataplane.model_metadata("scale", "2").versions == ("2",)
    with pytest.raises(Unavailable, match="max_batch_size"):
        dataplane.model_metadata("bad")
    config = dataplane.model_config("scale")
    assert (config["name"], config["max_batch_size"]) == ("scale", 8)
    assert config["input"] == [{"name": "x", "data_type": "TYPE_FP32", "dims": [2]}]


async def test_repository_index(stack: Stack) -> None:
    rows = {(r.name, r.version): r for r in stack.dataplane.repository_index()}
    assert set(rows) == {("bad", ""), ("bounded", "1"), ("scale", "1"), ("scale", "2")}
    assert rows[("bad", "")].state is ModelState.UNAVAILABLE
    assert "max_batch_size" in rows[("bad", "")].reason
    ready = stack.dataplane.repository_index(ready_only=True)
    assert {r.name for r in ready} == {"bounded", "scale"}


# ---- inference -------------------------------------------------------------------------------


async def test_infer_routes_to_the_version_and_answers_the_request(stack: Stack) -> None:
    dataplane = stack.dataplane
    rows = [[1.0, 2.0], [3.0, 4.0]]
    default = await dataplane.infer(scale_request("scale", rows, request_id="r-1"))
    assert (default.model_name, default.model_version, default.id) == ("scale", "1", "r-1")
    y, count = default.outputs
    assert (y.name, y.datatype, y.shape) == ("y", "FP32", (2, 2))
    np.testing.assert_array_equal(y.data, rows)
    assert (count.name, count.datatype, count.data.tolist()) == ("rows", "INT32", [[2], [2]])
    second = await dataplane.infer(scale_request("scale", rows, version="2", outputs=("y",)))
    assert second.model_version == "2" and [o.name for o in second.outputs] == ["y"]
    np.testing.assert_array_equal(second.outputs[0].data, np.asarray(rows) * 2)


@pytest.mark.parametrize(
    ("request_args", "error", "message"),
    [
        (("nope", [[1.0, 2.0]]), NotFound, "Request for unknown model: 'nope' is not found"),
        (("scale", [[1.0, 2.0]], "9"), NotFound, "no version '9'"),
        (("bad", [[1.0, 2.0]]), Unavailable, "has no READY version"),
        (("scale", [[1.0, 2.0, 3.0]]), InvalidArgument, "does not match"),
        (("scale", [[1.0, 2.0]] * 9), InvalidArgument, "exceeds the model's max_batch_size 8"),
        (("scale", [[-1.0, 2.0]]), InvalidArgument, "negative input"),
    ],
)
async def test_bad_requests_fail_with_their_reason_and_are_counted(
    stack: Stack, request_args: tuple[str, ...], error: type[Exception], message: str
) -> None:
    request = scale_request(*request_args)  # type: ignore[arg-type]
    with pytest.raises(error, match=message):
        await stack.dataplane.infer(request)
    values = await metrics(stack)
    failures = {
        labels: value
        for (name, labels), value in values.items()
        if name == "modelserve_inference_requests_total" and ("outcome", "success") not in labels
    }
    assert sum(failures.values()) == 1, failures


async def test_a_bad_timeout_parameter_is_refused(stack: Stack) -> None:
    for timeout in (-1, "soon", True):
        with pytest.raises(InvalidArgument, match="'timeout' must be a non-negative integer"):
            await stack.dataplane.infer(scale_request("scale", [[1.0, 2.0]], timeout=timeout))
    answer = await stack.dataplane.infer(scale_request("scale", [[1.0, 2.0]], timeout=10**7))
    assert answer.model_version == "1"


async def test_statistics_and_metrics_count_what_happened(stack: Stack) -> None:
    dataplane = stack.dataplane
    for _ in range(3):
        await dataplane.infer(scale_request("scale", [[1.0, 2.0], [3.0, 4.0]]))
    with pytest.raises(InvalidArgument):
        await dataplane.infer(scale_request("scale", [[-1.0, 2.0]]))
    [stats] = dataplane.model_statistics("scale", "1")
    assert (stats.name, stats.version, stats.inference_count) == ("scale", "1", 6)
    assert (stats.success.count, stats.fail.count, stats.execution_count) == (3, 1, 3)
    assert [(s.name, s.version) for s in dataplane.model_statistics("scale")] == [
        ("scale", "1"),
        ("scale", "2"),
    ]
    assert {(s.name, s.version) for s in dataplane.model_statistics()} == {
        ("bounded", "1"),
        ("scale", "1"),
        ("scale", "2"),
    }
    with pytest.raises(NotFound):
        dataplane.model_statistics("nope")
    values = await metrics(stack)
    labels = {"model": "scale", "version": "1"}
    success = sample_key("modelserve_inference_requests_total", **labels, outcome="success")
    refused = sample_key(
        "modelserve_inference_requests_total", **labels, outcome="invalid_argument"
    )
    assert (values[success], values[refused]) == (3, 1)


async def test_requests_a_transport_could_not_decode_are_counted_by_known_names(
    stack: Stack,
) -> None:
    dataplane = stack.dataplane
    dataplane.record_rejected("scale", "2", ErrorCode.INVALID_ARGUMENT)
    dataplane.record_rejected("scale", "77", ErrorCode.INVALID_ARGUMENT)
    dataplane.record_rejected("made-up-name", "1", ErrorCode.INVALID_ARGUMENT)
    values = await metrics(stack)
    counted = {
        (dict(labels)["model"], dict(labels)["version"]): value
        for (name, labels), value in values.items()
        if name == "modelserve_inference_requests_total"
    }
    assert counted[("scale", "2")] == 1
    assert counted[("scale", "")] == 1, "an unknown version counts under the model alone"
    assert not any(model == "made-up-name" for model, _ in counted), "no series per made-up name"
    assert sum(counted.values()) == 3


async def test_a_full_queue_is_refused_before_decoding(stack: Stack, marks: Path) -> None:
    dataplane = stack.dataplane
    dataplane.check_capacity("bounded")  # room
    dataplane.check_capacity("nope")  # not its business: infer says what is wrong
    (marks / "hold").touch()
    running = asyncio.ensure_future(dataplane.infer(scale_request("bounded", [[1.0, 2.0]])))
    await until(marks / "started-bounded-1")
    queued = asyncio.ensure_future(dataplane.infer(scale_request("bounded", [[1.0, 2.0]])))
    await asyncio.sleep(0.05)
    with pytest.raises(ResourceExhausted, match="queue is full"):
        dataplane.check_capacity("bounded")
    with pytest.raises(ResourceExhausted):
        await dataplane.infer(scale_request("bounded", [[1.0, 2.0]]))
    (marks / "hold").unlink()
    assert [a.model_version for a in await asyncio.gather(running, queued)] == ["1", "1"]


async def test_requests_in_flight_are_counted_until_answered(stack: Stack, marks: Path) -> None:
    """modelserve_inflight_requests: the one running and the one queued behind it, then none
    once both are answered; a refused request is never left counted."""
    dataplane = stack.dataplane
    gauge = sample_key("modelserve_inflight_requests")
    assert (await metrics(stack))[gauge] == 0
    (marks / "hold").touch()
    running = asyncio.ensure_future(dataplane.infer(scale_request("bounded", [[1.0, 2.0]])))
    await until(marks / "started-bounded-1")
    queued = asyncio.ensure_future(dataplane.infer(scale_request("bounded", [[1.0, 2.0]])))
    await asyncio.sleep(0)
    assert (await metrics(stack))[gauge] == 2
    with pytest.raises(ResourceExhausted):
        await dataplane.infer(scale_request("bounded", [[1.0, 2.0]]))
    with pytest.raises(NotFound):
        await dataplane.infer(scale_request("nope", [[1.0, 2.0]]))
    assert (await metrics(stack))[gauge] == 2
    (marks / "hold").unlink()
    await asyncio.gather(running, queued)
    assert (await metrics(stack))[gauge] == 0


async def test_draining_refuses_new_inference(stack: Stack) -> None:
    stack.dataplane.stop_accepting()
    assert not stack.dataplane.accepting
    with pytest.raises(Unavailable, match="shutting down"):
        await stack.dataplane.infer(scale_request("scale", [[1.0, 2.0]]))


# ---- load and unload -------------------------------------------------------------------------


async def test_load_with_a_config_override_and_unload(stack: Stack, marks: Path) -> None:
    dataplane = stack.dataplane
    override = {
        **scale_config(marks, max_batch_size=2),
        "runtime": "python",
        "entrypoint": "model:Scale",
    }  # the whole model.yaml: it replaces the one on disk
    await dataplane.load_model("scale", json.dumps(override))
    assert dataplane.model_metadata("scale").versions == ("2",)
    assert dataplane.model_config("scale")["max_batch_size"] == 2
    await dataplane.unload_model("scale")
    assert not dataplane.model_ready("scale")
    with pytest.raises(NotFound):
        await dataplane.unload_model("nope")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"max_batch_size": -1}', "max_batch_size"),
        ('{"trust": true}', "may not set 'trust'"),
        ('{"runtime": "os:system"}', "'module:Class' runtime"),
    ],
)
async def test_config_overrides_that_are_refused(stack: Stack, config: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        await stack.dataplane.load_model("scale", config)
    assert stack.dataplane.model_metadata("scale").versions == ("1", "2"), "still serving"


async def test_load_and_unload_need_explicit_mode(repo: Path) -> None:
    stack = await open_stack(repo, mode="none")
    try:
        with pytest.raises(FailedPrecondition, match="--model-control-mode explicit"):
            await stack.dataplane.load_model("scale")
        with pytest.raises(FailedPrecondition):
            await stack.dataplane.unload_model("scale")
    finally:
        await stack.close()
