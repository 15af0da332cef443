"""The serving half of a server, built for unit tests from real parts over a temporary
repository: ModelRepository, Router, Lifecycle and DataPlane, with no transport and no socket.

Its models are ``SCALE``, a python model whose answer tells which version served it
(``y = x * version``), that refuses negative input like a framework would (ValueError), that
holds every request while the test's ``hold`` file exists, and that leaves an ``unloaded-…``
file when it is unloaded. The marker files live outside the repository, so they never change a
model's fingerprint."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelserve.dataplane import DataPlane
from modelserve.observability import Observability
from modelserve.routing.router import Router
from modelserve.runtimes.registry import RuntimeRegistry
from modelserve.serving.lifecycle import ControlMode, Lifecycle
from modelserve.serving.repository import ModelRepository
from modelserve.types import InferenceRequest, RequestedOutput, Tensor
from tests.harness import write_python_model

SCALE = """
import time
from pathlib import Path

class Scale:
    def load(self, version_dir, parameters):
        self.version_dir = Path(version_dir)
        if (self.version_dir / "broken").exists():
            raise RuntimeError("this version is broken")
        self.marks = Path(parameters["marks"])
        self.tag = f"{self.version_dir.parent.name}-{self.version_dir.name}"
        self.factor = float(self.version_dir.name)

    def predict(self, inputs):
        (self.marks / f"started-{self.tag}").touch()
        while (self.marks / "hold").exists():
            time.sleep(0.002)
        x = inputs["x"]
        if (x < 0).any():
            raise ValueError("negative input")
        return {"y": x * self.factor, "rows": [[len(x)]] * len(x)}

    def unload(self):
        (self.marks / f"unloaded-{self.tag}").touch()
"""


def scale_config(marks: Path, **extra: Any) -> dict[str, Any]:
    """model.yaml of a SCALE model: x FP32 [-1, 2] to y FP32 [-1, 2] and rows INT32 [-1, 1]."""
    return {
        "max_batch_size": 8,
        "execution": "thread",  # its predict may hold: never on the event loop
        "parameters": {"marks": str(marks)},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
        "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [-1, 2]},
            {"name": "rows", "datatype": "INT32", "shape": [-1, 1]},
        ],
        **extra,
    }


def write_scale_model(
    repo: Path, marks: Path, name: str, versions: Sequence[int] = (1,), **extra: Any
) -> Path:
    marks.mkdir(parents=True, exist_ok=True)
    return write_python_model(
        repo, name, SCALE, scale_config(marks, **extra), versions, entrypoint="Scale"
    )


def scale_request(
    name: str,
    rows: list[list[float]],
    version: str = "",
    outputs: tuple[str, ...] | None = None,
    request_id: str | None = None,
    **parameters: Any,
) -> InferenceRequest:
    data = np.asarray(rows, dtype=np.float32)
    return InferenceRequest(
        model_name=name,
        model_version=version,
        inputs=(Tensor("x", "FP32", data.shape, data),),
        id=request_id,
        parameters=parameters,
        outputs=None if outputs is None else tuple(RequestedOutput(o) for o in outputs),
    )


@dataclass
class Stack:
    repository: ModelRepository
    router: Router
    lifecycle: Lifecycle
    dataplane: DataPlane
    observability: Observability
    executor: ThreadPoolExecutor

    async def close(self) -> None:
        await self.lifecycle.stop()
        self.executor.shutdown(wait=True)


async def open_stack(
    root: Path,
    mode: ControlMode = "none",
    names: list[str] | None = None,
    poll_secs: float = 3600.0,
) -> Stack:
    """The serving half over ``root``, its models loaded (``names``, or all), and ready.
    Polling waits ``poll_secs`` (an hour: tests call ``poll_once`` themselves)."""
    executor = ThreadPoolExecutor(4, thread_name_prefix="test-infer")
    repository = ModelRepository(root, RuntimeRegistry(), executor)
    lifecycle = Lifecycle(repository, mode, poll_secs=poll_secs, drain_timeout_s=10.0)
    observability = Observability(process_metrics=False)
    router = Router(repository)
    dataplane = DataPlane(repository, router, lifecycle, "modelserve", "9.9.9", observability)
    await lifecycle.start(names)
    dataplane.set_ready(True)
    return Stack(repository, router, lifecycle, dataplane, observability, executor)
