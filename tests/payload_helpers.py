"""Helpers of the payload-logging tests: a repository of iris_onnx copies with a ``logging:``
key, reading JSON-lines files, waiting for a condition, reading one metric from a scrape."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml
from prometheus_client.parser import text_string_to_metric_families

BODY = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}


def make_repo(model_repo: Path, target: Path, **models: dict[str, Any] | None) -> Path:
    """A repository of copies of iris_onnx named by ``models``, each with the given
    ``logging:`` (None: no key)."""
    for name, logging in models.items():
        shutil.copytree(model_repo / "iris_onnx", target / name)
        config = yaml.safe_load((target / name / "model.yaml").read_text()) or {}
        if logging is not None:
            config["logging"] = logging
        (target / name / "model.yaml").write_text(yaml.safe_dump(config))
    return target


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of ``path`` ([] while it does not exist)."""
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_text().splitlines() if line]


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def payload_metric(base_url: str, name: str, **labels: str) -> float | None:
    """The value of one sample of a scrape of ``base_url`` (None: not there)."""
    text = httpx.get(f"{base_url}/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None
