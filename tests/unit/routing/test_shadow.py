"""The shadow mirror (routing/shadow.py) over a real serving stack: a python model whose
versions behave differently, the real dataplane running each copy on the version it names."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pytest
from prometheus_client import CollectorRegistry

from modelserve.routing.shadow import ShadowMirror, compare_outputs
from modelserve.types import InferenceRequest, InferenceResponse, RequestedOutput, Tensor
from tests.harness import write_python_model
from tests.unit.serving_stack import Stack, open_stack

VERSIONS = """
import time
from pathlib import Path

import numpy as np


class Versions:
    # 1: the baseline; 2: fails every request; 3: answers another class where x1 < 0.25;
    # 4: score off by |x1|; 5: like 1, but holds while the test's hold file exists.
    def load(self, version_dir, parameters):
        self.version = int(Path(version_dir).name)
        self.hold = Path(parameters["marks"]) / f"hold-{self.version}"

    def predict(self, inputs):
        while self.hold.exists():
            time.sleep(0.002)
        if self.version == 2:
            raise RuntimeError("version 2 is broken")
        x = inputs["x"]
        label = (x[:, 0] > 0.5).astype(np.int64)
        score = (2 * x[:, 0]).astype(np.float32)
        if self.version == 3:
            label = np.where(x[:, 1] < 0.25, 1 - label, label)
        if self.version == 4:
            score = score + x[:, 1]
        return {"label": label, "score": score}
"""


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    folder = tmp_path / "marks"
    folder.mkdir()
    return folder


@pytest.fixture
async def stack(tmp_path: Path, marks: Path) -> AsyncIterator[Stack]:
    repo = tmp_path / "repo"
    config = {
        "max_batch_size": 64,
        "execution": "thread",
        "version_policy": {"all": True},
        "default_version": "1",
        "parameters": {"marks": str(marks)},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "score", "datatype": "FP32", "shape": [-1]},
        ],
    }
    write_python_model(repo, "m", VERSIONS, config, (1, 2, 3, 4, 5), entrypoint="Versions")
    opened = await open_stack(repo)
    yield opened
    for hold in marks.glob("hold-*"):
        hold.unlink()
    await opened.close()


def mirror_of(stack: Stack, **options: object) -> ShadowMirror:
    async def infer(request: InferenceRequest, version: str) -> InferenceResponse:
        return await stack.dataplane.infer(dataclasses.replace(request, model_version=version))

    return ShadowMirror(infer, **options)  # type: ignore[arg-type]


def request(rows: npt.ArrayLike) -> InferenceRequest:
    data = np.asarray(rows, dtype=np.float32)
    return InferenceRequest("m", (Tensor("x", "FP32", data.shape, data),))


async def answered(stack: Stack, rows: npt.ArrayLike) -> tuple[InferenceRequest, InferenceResponse]:
    sent = request(rows)
    return sent, await stack.dataplane.infer(sent)


async def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition never held")
        await asyncio.sleep(0.01)


def samples(registry: CollectorRegistry, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == name
    }


async def test_a_failing_version_is_counted_and_never_raises(stack: Stack) -> None:
    registry = CollectorRegistry()
    mirror = mirror_of(stack, registry=registry)
    await mirror.start()
    rng = np.random.default_rng(1)
    for _ in range(20):
        sent, primary = await answered(stack, rng.random((4, 2)))
        assert mirror.offer("m", "2", sent, primary)
        assert primary.model_version == "1"
    await wait_until(lambda: mirror.stats("m")["failed"] == 20)
    await mirror.stop()
    stats = mirror.stats("m")
    assert stats["version"] == "2"
    assert (stats["mirrored"], stats["dropped"], stats["compared"]) == (0, 0, 0)
    assert stats["agreement_ratio"] is None and stats["abs_diff"] is None
    requests = samples(registry, "modelserve_shadow_requests_total")
    assert requests[(("model", "m"), ("outcome", "failed"), ("version", "2"))] == 20


async def test_a_slow_version_sheds_copies_when_the_queue_is_full(
    stack: Stack, marks: Path
) -> None:
    registry = CollectorRegistry()
    mirror = mirror_of(stack, registry=registry, capacity=4, concurrency=2)
    await mirror.start()
    (marks / "hold-5").touch()
    sent, primary = await answered(stack, [[0.9, 0.9]])
    assert mirror.offer("m", "5", sent, primary)
    assert mirror.offer("m", "5", sent, primary)
    await wait_until(lambda: mirror.queued == 0)  # both workers are held in version 5
    started = time.perf_counter()
    accepted = [mirror.offer("m", "5", sent, primary) for _ in range(10)]
    assert time.perf_counter() - started < 0.5, "offer never waits"
    assert accepted == [True] * 4 + [False] * 6
    # The primary path is not held up by the stuck mirror.
    _, again = await answered(stack, [[0.1, 0.1]])
    assert again.model_version == "1"
    (marks / "hold-5").unlink()
    await wait_until(lambda: mirror.stats("m")["mirrored"] == 6)
    await mirror.stop()
    stats = mirror.stats("m")
    assert (stats["dropped"], stats["failed"], stats["agreement_ratio"]) == (6, 0, 1.0)
    dropped = samples(registry, "modelserve_shadow_dropped_total")
    assert dropped == {(("model", "m"), ("version", "5")): 6.0}


async def test_stop_never_hangs_on_a_stuck_copy(stack: Stack, marks: Path) -> None:
    mirror = mirror_of(stack, capacity=8, concurrency=1, drain_s=0.2)
    await mirror.start()
    (marks / "hold-5").touch()
    sent, primary = await answered(stack, [[0.9, 0.9]])
    for _ in range(3):
        assert mirror.offer("m", "5", sent, primary)
    started = time.monotonic()
    await asyncio.wait_for(mirror.stop(), 30)
    assert time.monotonic() - started < 10
    stats = mirror.stats("m")
    assert stats["dropped"] >= 2 and stats["mirrored"] == 0
    assert not mirror.offer("m", "5", sent, primary), "a stopped mirror takes nothing"


async def test_a_timed_out_copy_counts_as_failed(stack: Stack, marks: Path) -> None:
    mirror = mirror_of(stack, timeout_s=0.2)
    await mirror.start()
    (marks / "hold-5").touch()
    sent, primary = await answered(stack, [[0.9, 0.9]])
    assert mirror.offer("m", "5", sent, primary)
    await wait_until(lambda: mirror.stats("m")["failed"] == 1)
    (marks / "hold-5").unlink()
    await mirror.stop()


async def test_the_agreement_ratio_of_a_version_answering_another_class_on_a_quarter(
    stack: Stack,
) -> None:
    registry = CollectorRegistry()
    mirror = mirror_of(stack, registry=registry)
    await mirror.start()
    rng = np.random.default_rng(2)
    for _ in range(50):
        sent, primary = await answered(stack, rng.random((8, 2)))
        assert mirror.offer("m", "3", sent, primary)
    await wait_until(lambda: mirror.stats("m")["mirrored"] == 50)
    await mirror.stop()
    stats = mirror.stats("m")
    assert stats["rows"] == 400 and stats["compared"] == 50
    assert stats["agreement_ratio"] == pytest.approx(0.75, abs=0.05)
    gauge = samples(registry, "modelserve_shadow_agreement_ratio")
    assert gauge == {(("model", "m"), ("version", "3")): stats["agreement_ratio"]}
    comparisons = samples(registry, "modelserve_shadow_comparisons_total")
    agree = comparisons[(("model", "m"), ("result", "agree"), ("version", "3"))]
    assert agree / 400 == stats["agreement_ratio"]
    # version 3 scores exactly as version 1
    assert stats["abs_diff"] == {"count": 400, "mean": 0.0, "p50": 0.0, "p99": 0.0, "max": 0.0}
    assert orjson.loads(orjson.dumps(stats)) == stats


async def test_a_regressors_absolute_differences(stack: Stack) -> None:
    registry = CollectorRegistry()
    mirror = mirror_of(stack, registry=registry)
    await mirror.start()
    rng = np.random.default_rng(3)
    sent_rows = []
    for _ in range(25):
        rows = rng.random((8, 2)).astype(np.float32)
        sent_rows.append(rows)
        sent, primary = await answered(stack, rows)
        assert mirror.offer("m", "4", sent, primary)
    await wait_until(lambda: mirror.stats("m")["mirrored"] == 25)
    await mirror.stop()
    # version 4's score is version 1's plus x1, computed in float32 like the model does
    x = np.concatenate(sent_rows)
    base = (2 * x[:, 0]).astype(np.float32)
    expected = np.abs((base + x[:, 1]).astype(np.float64) - base.astype(np.float64))
    stats = mirror.stats("m")["abs_diff"]
    assert stats["count"] == 200
    assert stats["mean"] == pytest.approx(expected.mean(), rel=1e-9)
    assert stats["max"] == pytest.approx(expected.max(), rel=1e-9)
    assert stats["p50"] == pytest.approx(np.quantile(expected, 0.5), rel=1e-9)
    assert stats["p99"] == pytest.approx(np.quantile(expected, 0.99), rel=1e-9)
    assert mirror.stats("m")["agreement_ratio"] == 1.0  # same labels
    histogram = samples(registry, "modelserve_shadow_abs_difference_bucket")
    by_bound = {dict(labels)["le"]: value for labels, value in histogram.items()}
    assert by_bound["+Inf"] == 200
    assert by_bound["0.1"] == np.count_nonzero(expected <= 0.1)
    assert by_bound["1.0"] == 200
    total = samples(registry, "modelserve_shadow_abs_difference_sum")
    assert next(iter(total.values())) == pytest.approx(expected.sum(), rel=1e-9)


async def test_a_copy_never_touches_the_clients_shared_memory(stack: Stack) -> None:
    """The primary read its input from a shared-memory region and wrote its output into one
    (the dataplane leaves the region parameters on the tensors it read): the copy runs on the
    data already read and answers in the response, and the output the client holds in its
    region is not compared."""
    mirror = mirror_of(stack)
    await mirror.start()
    data = np.asarray([[0.9, 0.9]], dtype=np.float32)
    region = {"shared_memory_region": "client", "shared_memory_byte_size": 8}
    sent = InferenceRequest(
        "m",
        (Tensor("x", "FP32", data.shape, data, region),),
        outputs=(RequestedOutput("label"), RequestedOutput("score", region)),
    )
    label = np.asarray([1], dtype=np.int64)
    primary = InferenceResponse(
        "m",
        "1",
        (
            Tensor("label", "INT64", (1,), label),
            Tensor("score", "FP32", (1,), np.empty(0, dtype=np.float32), region),
        ),
    )
    assert mirror.offer("m", "3", sent, primary)
    await wait_until(lambda: mirror.stats("m")["mirrored"] + mirror.stats("m")["failed"] == 1)
    await mirror.stop()
    stats = mirror.stats("m")
    assert (stats["mirrored"], stats["failed"], stats["mismatched"]) == (1, 0, 0)
    assert (stats["rows"], stats["agreement_ratio"], stats["abs_diff"]) == (1, 1.0, None)
    assert sent.inputs[0].parameters == region, "the primary's request is left as it was"


def test_compare_outputs_by_name_and_kind() -> None:
    def tensor(name: str, datatype: str, data: list[Any], dtype: Any) -> Tensor:
        array = np.asarray(data, dtype=dtype)
        return Tensor(name, datatype, array.shape, array)

    primary = InferenceResponse(
        "m",
        "1",
        (
            tensor("label", "BYTES", [b"cat", b"dog"], object),
            tensor("predicted_class", "FP32", [1.0, 0.0], np.float32),
            tensor("proba", "FP64", [[0.9, 0.1], [0.2, 0.8]], np.float64),
            tensor("extra", "FP32", [1.0, 2.0], np.float32),
        ),
    )
    shadow = InferenceResponse(
        "m",
        "2",
        (
            tensor("label", "BYTES", [b"cat", b"cow"], object),
            tensor("predicted_class", "FP32", [1.0, 0.0], np.float32),
            tensor("proba", "FP64", [[0.8, 0.2], [0.2, 0.8]], np.float64),
            tensor("extra", "FP32", [1.0, 2.0, 3.0], np.float32),
        ),
    )
    result = compare_outputs(primary, shadow)
    assert (result.rows, result.agreed) == (4, 3)
    assert result.differences.tolist() == pytest.approx([0.1, 0.1, 0.0, 0.0])
    assert result.mismatched == ["extra"]


def test_figures_of_a_model_never_mirrored() -> None:
    async def infer(request: InferenceRequest, version: str) -> InferenceResponse:
        raise AssertionError("not called")

    stats = ShadowMirror(infer).stats("nothing")
    assert stats["version"] is None and stats["mirrored"] == 0
