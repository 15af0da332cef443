"""Helpers of the monitoring tests: a repository with the iris classifier and its training data
as reference, the in-distribution rows with their true labels, and requests sent with ids."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

from tests.harness import example_builder


def training_data() -> tuple[np.ndarray, np.ndarray]:
    """The rows and labels the example iris classifier was fitted on (200 rows)."""
    x, y = example_builder().classification_data()
    return x.astype(np.float32), y.astype(np.int64)


def monitored_repo(
    model_repo: Path, target: Path, monitoring: dict[str, Any], name: str = "iris"
) -> Path:
    """A repository with a copy of iris_onnx named ``name``, with ``monitoring:`` in its
    model.yaml and its training data as ``reference.csv`` (columns f0…f3, then the label)."""
    folder = target / name
    shutil.copytree(model_repo / "iris_onnx", folder)
    config = yaml.safe_load((folder / "model.yaml").read_text()) or {}
    config["monitoring"] = monitoring
    (folder / "model.yaml").write_text(yaml.safe_dump(config))
    x, y = training_data()
    lines = ["f0,f1,f2,f3,species"]
    lines += [
        ",".join(f"{v:.9g}" for v in row) + f",{label}" for row, label in zip(x, y, strict=True)
    ]
    (folder / "reference.csv").write_text("\n".join(lines) + "\n")
    return target


def in_distribution(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows drawn from the training rows (with replacement) and their true labels."""
    x, y = training_data()
    picks = np.random.default_rng(seed).integers(0, len(x), n)
    return x[picks], y[picks]


def predict_all(
    base_url: str,
    model: str,
    rows: np.ndarray,
    prefix: str,
    fresh_connections: bool = False,
    start: int = 0,
) -> list[int]:
    """One request per row with the V2 id ``<prefix>-<start + i>``; the predicted labels."""
    predicted: list[int] = []
    client = httpx.Client(base_url=base_url)
    try:
        for i, row in enumerate(rows):
            body = {
                "id": f"{prefix}-{start + i}",
                "inputs": [
                    {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": row.tolist()}
                ],
                "outputs": [{"name": "label"}],
            }
            if fresh_connections:
                reply = httpx.post(f"{base_url}/v2/models/{model}/infer", json=body)
            else:
                reply = client.post(f"/v2/models/{model}/infer", json=body)
            assert reply.status_code == 200, reply.text
            predicted.append(int(reply.json()["outputs"][0]["data"][0]))
    finally:
        client.close()
    return predicted


def send_labels(base_url: str, model: str, labels: list[dict[str, Any]]) -> dict[str, Any]:
    reply = httpx.post(f"{base_url}/v2/models/{model}/labels", json={"labels": labels})
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()
    return result


def monitoring(base_url: str, model: str) -> dict[str, Any]:
    reply = httpx.get(f"{base_url}/v2/models/{model}/monitoring")
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()
    return result
