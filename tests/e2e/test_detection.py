"""The detection example end to end: images drawn with Pillow posted to detector_pipeline
(image_decode -> letterbox 320 -> normalize -> layout -> detector_onnx -> nms) as a raw file,
through tritonclient over REST and gRPC, a corrupt image in a batch."""

from __future__ import annotations

import io
import shlex
import subprocess
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.harness import RunningServer, example_builder

BUILD = example_builder()
OUTPUTS = ("boxes", "scores", "classes", "labels", "count")
LABELS = [name.encode() for name in BUILD.SHAPES]


def scene(seed: int, width: int, height: int, fmt: str = "JPEG") -> tuple[bytes, np.ndarray]:
    image, boxes, _ = BUILD.draw_scene(np.random.default_rng(seed), width, height)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue(), boxes


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def check_well_formed(out: dict[str, np.ndarray], sizes: list[tuple[int, int]]) -> None:
    """Boxes inside their image, best first, classes and labels that agree, padding after
    each image's count."""
    n, k = out["scores"].shape
    assert n == len(sizes)
    assert out["boxes"].shape == (n, k, 4) and out["boxes"].dtype == np.float32
    assert out["classes"].shape == out["labels"].shape == (n, k)
    assert out["count"].shape == (n,) and k == out["count"].max() and k <= 20
    for i, (width, height) in enumerate(sizes):
        m = int(out["count"][i])
        boxes, scores = out["boxes"][i, :m], out["scores"][i, :m]
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= width).all()
        assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= height).all()
        assert (boxes[:, 0] <= boxes[:, 2]).all() and (boxes[:, 1] <= boxes[:, 3]).all()
        assert (scores >= 0.3).all() and (scores <= 1).all()
        assert (np.diff(scores) <= 0).all()
        classes = out["classes"][i, :m]
        assert [out["labels"][i, j] for j in range(m)] == [LABELS[c] for c in classes]
        assert (out["classes"][i, m:] == -1).all() and (out["scores"][i, m:] == 0).all()


def test_a_file_posted_as_it_is_finds_the_shapes_in_its_pixels(
    server: RunningServer, part_image: Path
) -> None:
    # README.md's command; examples/images/part.jpg is built with the example models, in a
    # temporary folder for the tests (the part_image fixture)
    _, truth, _ = BUILD.draw_scene(np.random.default_rng(BUILD.SEED + 1), 640, 480)
    command = (
        f"curl -s --fail-with-body --data-binary @{shlex.quote(str(part_image))} "
        f"http://{server.url}/v2/models/detector_pipeline/infer"
    )
    done = subprocess.run(command, shell=True, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    answer = httpx.Response(200, content=done.stdout).json()
    assert answer["model_name"] == "detector_pipeline"
    types = {"FP32": np.float32, "INT32": np.int32, "BYTES": object}
    out: dict[str, Any] = {
        o["name"]: np.array(o["data"], dtype=types[o["datatype"]]).reshape(o["shape"])
        for o in answer["outputs"]
    }
    out["labels"] = np.vectorize(str.encode, otypes=[object])(out["labels"])
    check_well_formed(out, [(640, 480)])
    found = out["boxes"][0, : int(out["count"][0])]
    # every shape drawn is found where it is in the 640x480 image (the letterbox undone)
    for box in truth:
        assert max(iou(box, f) for f in found) > 0.5, (box, found)


def test_tritonclient_batches_images_of_different_sizes(server: RunningServer) -> None:
    jpeg, _ = scene(7, 400, 300)
    png, _ = scene(8, 200, 500, "PNG")
    images = np.array([[jpeg], [png]], dtype=object)
    http = httpclient.InferenceServerClient(server.url)
    tensor = httpclient.InferInput("image", [2, 1], "BYTES")
    tensor.set_data_from_numpy(images, binary_data=True)
    wanted = [httpclient.InferRequestedOutput(name, binary_data=True) for name in OUTPUTS]
    result = http.infer("detector_pipeline", [tensor], outputs=wanted)
    rest = {name: result.as_numpy(name) for name in OUTPUTS}
    check_well_formed(rest, [(400, 300), (200, 500)])

    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput("image", [2, 1], "BYTES")
    tensor.set_data_from_numpy(images)
    answer = grpc.infer("detector_pipeline", [tensor])
    for name in OUTPUTS:
        np.testing.assert_array_equal(answer.as_numpy(name), rest[name])


def test_a_corrupt_image_is_a_400_naming_its_element(server: RunningServer) -> None:
    good, _ = scene(9, 64, 64)
    images = np.array([[good], [good[: len(good) // 3]]], dtype=object)
    http = httpclient.InferenceServerClient(server.url)
    tensor = httpclient.InferInput("image", [2, 1], "BYTES")
    tensor.set_data_from_numpy(images, binary_data=True)
    with pytest.raises(InferenceServerException) as caught:
        http.infer("detector_pipeline", [tensor])
    assert caught.value.status() == "400"
    message = str(caught.value.message())
    assert message.startswith(
        "step 'decode' (transform image_decode): element 1 of input 'images' is not a valid "
        "JPEG/PNG image"
    )
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput("image", [2, 1], "BYTES")
    tensor.set_data_from_numpy(images)
    with pytest.raises(InferenceServerException, match="element 1 of input") as caught:
        grpc.infer("detector_pipeline", [tensor])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    reply = httpx.post(
        f"{server.http}/v2/models/detector_pipeline/infer",
        content=b"GIF89a not a jpeg",
        headers={"inference-header-content-length": "0"},
    )
    assert reply.status_code == 400 and "element 0 of input 'images'" in reply.json()["error"]
