"""nms: greedy suppression against a plain reference, the head formats, geometry, padding."""

from __future__ import annotations

import numpy as np
import pytest

from modelserve.errors import InvalidArgument, ModelLoadError
from modelserve.pipelines.detection import NMS, greedy_nms
from modelserve.pipelines.steps import Params


def reference_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """The textbook loop, one pair at a time."""

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    kept: list[int] = []
    for i in sorted(range(len(scores)), key=lambda j: -scores[j]):
        if all(iou(boxes[i], boxes[k]) <= threshold for k in kept):
            kept.append(i)
    return kept


@pytest.mark.parametrize("seed", range(5))
def test_greedy_nms_matches_the_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 100, (200, 2)).astype(np.float32)
    boxes = np.concatenate([corners, corners + rng.uniform(5, 40, (200, 2))], axis=1)
    scores = rng.random(200).astype(np.float32)
    kept = greedy_nms(boxes, scores, 0.4, 1000)
    assert kept.tolist() == reference_nms(boxes, scores, 0.4)
    assert greedy_nms(boxes, scores, 0.4, 3).tolist() == kept[:3].tolist()


def yolov5(rows: list[tuple[float, ...]]) -> np.ndarray:
    return np.array([rows], dtype=np.float32)


def test_yolov5_per_class_suppression_thresholds_and_padding() -> None:
    predictions = yolov5(
        [
            (50, 50, 20, 20, 0.9, 0.9, 0.1),  # class 0, score 0.81
            (51, 50, 20, 20, 0.8, 0.9, 0.1),  # overlaps the first, same class: suppressed
            (51, 51, 20, 20, 0.8, 0.1, 0.9),  # overlaps, other class: kept
            (10, 10, 4, 4, 0.2, 0.9, 0.1),  # score 0.18: under the threshold
        ]
    )
    step = NMS(Params("nms", {"labels": ["dent", "scratch"]}))
    out = step({"predictions": predictions})
    assert out["count"].tolist() == [2]
    np.testing.assert_allclose(out["scores"], [[0.81, 0.72]], rtol=1e-5)
    assert out["classes"].tolist() == [[0, 1]]
    assert out["labels"].tolist() == [[b"dent", b"scratch"]]
    np.testing.assert_allclose(out["boxes"][0, 0], [40, 40, 60, 60])
    agnostic = NMS(Params("nms", {"per_class": False}))({"predictions": predictions})
    assert agnostic["count"].tolist() == [1]
    two = np.concatenate([predictions, yolov5([(0, 0, 1, 1, 0.0, 0.0, 0.0)] * 4)])
    padded = step({"predictions": two})
    assert padded["count"].tolist() == [2, 0]
    assert padded["boxes"].shape == (2, 2, 4)
    assert padded["classes"][1].tolist() == [-1, -1] and padded["labels"][1].tolist() == [b"", b""]


def test_yolov8_and_boxes_formats() -> None:
    rows = np.array([[50, 50, 20, 20, 0.9, 0.1], [52, 50, 20, 20, 0.8, 0.2]], dtype=np.float32)
    out = NMS(Params("nms", {"format": "yolov8"}))({"predictions": rows.T[None]})
    assert out["count"].tolist() == [1] and out["scores"][0, 0] == pytest.approx(0.9)
    boxes = np.array([[[40, 40, 60, 60], [0, 0, 10, 10]]], dtype=np.float32)
    scores = np.array([[[0.3, 0.6], [0.9, 0.0]]], dtype=np.float32)
    out = NMS(Params("nms", {"format": "boxes"}))({"boxes": boxes, "scores": scores})
    assert out["classes"].tolist() == [[0, 1]]
    np.testing.assert_allclose(out["boxes"][0], [[0, 0, 10, 10], [40, 40, 60, 60]])
    cxcywh = NMS(Params("nms", {"format": "boxes", "box_encoding": "cxcywh"}))
    centred = np.array([[[50, 50, 20, 20]]], dtype=np.float32)
    out = cxcywh({"boxes": centred, "scores": np.array([[0.9]], dtype=np.float32)})
    np.testing.assert_allclose(out["boxes"][0, 0], [40, 40, 60, 60])


def test_geometry_maps_boxes_to_the_original_image_and_clips() -> None:
    # a 200x100 image letterboxed into 64x64: scale 0.32, padded 16 rows on top
    geometry = np.array([[0.32, 0.32, 0, 16, 200, 100]], dtype=np.float32)
    predictions = yolov5([(32, 32, 16, 16, 0.9, 0.9), (60, 20, 16, 16, 0.9, 0.8)])
    out = NMS(Params("nms", {}))({"predictions": predictions, "geometry": geometry})
    np.testing.assert_allclose(out["boxes"][0, 0], [75, 25, 125, 75], rtol=1e-5)
    np.testing.assert_allclose(out["boxes"][0, 1], [162.5, 0, 200, 37.5], rtol=1e-5)  # clipped


def test_wiring_and_shapes_are_checked() -> None:
    step = NMS(Params("nms", {}))
    with pytest.raises(ModelLoadError, match="takes inputs \\['predictions'\\]"):
        step.output_types({"boxes": "FP32", "scores": "FP32"})
    with pytest.raises(ModelLoadError, match="must be one of"):
        step.output_types({"predictions": "INT64"})
    with pytest.raises(InvalidArgument, match="too few values per candidate"):
        step({"predictions": np.zeros((1, 3, 5), dtype=np.float32)})
    with pytest.raises(InvalidArgument, match="needs at least 3 dimensions"):
        step({"predictions": np.zeros((3, 8), dtype=np.float32)})
    with pytest.raises(ModelLoadError, match="'box_encoding' is for format 'boxes'"):
        NMS(Params("nms", {"box_encoding": "cxcywh"}))


def test_classes_never_suppress_each_other_even_with_negative_coordinates() -> None:
    boxes = np.array([[[0, 0, 10, 10], [-31, -31, -21, -21]]], dtype=np.float32)
    scores = np.array([[[0.9, 0.0], [0.0, 0.8]]], dtype=np.float32)
    out = NMS(Params("nms", {"format": "boxes"}))({"boxes": boxes, "scores": scores})
    assert out["count"].tolist() == [2] and out["classes"].tolist() == [[0, 1]]
