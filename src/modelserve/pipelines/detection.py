"""``nms``: a detector's raw candidates -> the boxes it found, per image.

Decoding the head, thresholds, the top-candidate cut and the IoU computations are numpy over
all candidates at once; the only Python loop is greedy suppression's, one turn per box *kept*
(at most ``max_detections``), each turn one vectorised IoU against the remaining candidates.
Per-class suppression shifts each class's boxes into a region of its own, so that one pass
never lets boxes of different classes suppress each other (torchvision's batched_nms trick).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from modelserve.errors import InvalidArgument, ModelLoadError
from modelserve.pipelines.steps import FLOATS, Params, Transform, TypeMap, batched, expect_type
from modelserve.runtimes.base import Arrays
from modelserve.types import as_object_array

__all__ = ["NMS", "greedy_nms"]

FORMATS = ("yolov5", "yolov8", "boxes")
FloatArray = npt.NDArray[np.float32]


class NMS(Transform):
    """Non-maximum suppression over a batch of images.

    Inputs, by ``format``: ``yolov5`` (default) ``predictions`` [N, A, 5 + C] rows of
    (cx, cy, w, h, objectness, C class scores); ``yolov8`` ``predictions`` [N, 4 + C, A]
    (no objectness); ``boxes`` ``boxes`` [N, A, 4] and ``scores`` [N, A, C] (``box_encoding``
    xyxy, the default, or cxcywh). Optional ``geometry`` [N, 6] from resize maps the boxes back
    to the original image's pixels and clips them to it.

    Parameters: ``score_threshold`` (0.25) and ``iou_threshold`` (0.45); ``max_detections``
    per image (100); ``max_candidates`` best-scored candidates considered per image (4096);
    ``per_class`` (true: only boxes of the same class suppress each other); ``labels`` one
    name per class, adding a ``labels`` output.

    Outputs: ``boxes`` FP32 [N, K, 4] (x1, y1, x2, y2), ``scores`` FP32 [N, K], ``classes``
    INT32 [N, K], ``count`` INT32 [N] (boxes found per image), best first; K is the largest
    count in the batch, and rows past an image's count are padding (class -1, score 0)."""

    name = "nms"
    inputs = ()
    optional_inputs = ("predictions", "boxes", "scores", "geometry")

    def __init__(self, params: Params) -> None:
        self.format = params.choice("format", "yolov5", FORMATS)
        self.encoding = params.choice("box_encoding", "xyxy", ("xyxy", "cxcywh"))
        self.score_threshold = params.number("score_threshold", 0.25, low=0.0, high=1.0)
        self.iou_threshold = params.number("iou_threshold", 0.45, low=0.0, high=1.0)
        self.max_detections = params.integer("max_detections", 100, low=1, high=100_000)
        self.max_candidates = params.integer("max_candidates", 4096, low=1, high=1_000_000)
        self.per_class = params.boolean("per_class", True)
        labels = params.strings("labels")
        params.done()
        self.labels = as_object_array([s.encode() for s in labels]) if labels else None
        if self.format != "boxes" and self.encoding != "xyxy":
            raise ModelLoadError("nms parameter 'box_encoding' is for format 'boxes' only")

    def required(self) -> tuple[str, ...]:
        return ("boxes", "scores") if self.format == "boxes" else ("predictions",)

    def outputs(self) -> tuple[str, ...]:
        base = ("boxes", "scores", "classes", "count")
        return (*base, "labels") if self.labels is not None else base

    def output_types(self, types: TypeMap) -> dict[str, str | None]:
        wired = {name for name in types}
        missing = [name for name in self.required() if name not in wired]
        extra = sorted(wired - set(self.required()) - {"geometry"})
        if missing or extra:
            raise ModelLoadError(
                f"nms with format '{self.format}' takes inputs {list(self.required())} "
                f"(and optionally 'geometry'); wired: {sorted(wired)}"
            )
        for name in wired:
            expect_type(self.name, name, types[name], FLOATS)
        out: dict[str, str | None] = {
            "boxes": "FP32",
            "scores": "FP32",
            "classes": "INT32",
            "count": "INT32",
        }
        if self.labels is not None:
            out["labels"] = "BYTES"
        return out

    def __call__(self, inputs: Arrays) -> Arrays:
        boxes, scores = self._candidates(inputs)
        geometry = inputs.get("geometry")
        if geometry is not None and (geometry.ndim != 2 or geometry.shape != (len(boxes), 6)):
            raise InvalidArgument(
                f"input 'geometry' has shape {list(geometry.shape)}; it needs [{len(boxes)}, 6]"
            )
        found = [
            self._one(boxes[i], scores[i], None if geometry is None else geometry[i])
            for i in range(len(boxes))
        ]
        k = max((len(kept[1]) for kept in found), default=0)
        n = len(found)
        out_boxes = np.zeros((n, k, 4), dtype=np.float32)
        out_scores = np.zeros((n, k), dtype=np.float32)
        out_classes = np.full((n, k), -1, dtype=np.int32)
        count = np.zeros(n, dtype=np.int32)
        for i, (kept_boxes, kept_scores, kept_classes) in enumerate(found):
            m = len(kept_scores)
            out_boxes[i, :m], out_scores[i, :m], out_classes[i, :m] = (
                kept_boxes,
                kept_scores,
                kept_classes,
            )
            count[i] = m
        out: Arrays = {
            "boxes": out_boxes,
            "scores": out_scores,
            "classes": out_classes,
            "count": count,
        }
        if self.labels is not None:
            table = np.append(self.labels, np.array([b""], dtype=object))  # -1 -> b""
            if k and out_classes.max() >= len(self.labels):
                raise InvalidArgument(
                    f"the detector gives more classes than the {len(self.labels)} 'labels'"
                )
            out["labels"] = table[out_classes]
        return out

    def _candidates(self, inputs: Arrays) -> tuple[FloatArray, FloatArray]:
        """Boxes [N, A, 4] as x1, y1, x2, y2 and class scores [N, A, C]."""
        if self.format == "boxes":
            boxes = batched("boxes", inputs["boxes"], 3).astype(np.float32, copy=False)
            scores = batched("scores", inputs["scores"], 2).astype(np.float32, copy=False)
            if scores.ndim == 2:
                scores = scores[:, :, None]
            if boxes.shape[-1] != 4 or boxes.shape[:2] != scores.shape[:2]:
                raise InvalidArgument(
                    f"inputs 'boxes' {list(boxes.shape)} and 'scores' {list(scores.shape)} "
                    "must be [N, A, 4] and [N, A, C]"
                )
            if self.encoding == "cxcywh":
                boxes = _xyxy(boxes)
            return boxes, scores
        predictions = batched("predictions", inputs["predictions"], 3)
        predictions = predictions.astype(np.float32, copy=False)
        if self.format == "yolov8":
            predictions = predictions.transpose(0, 2, 1)
        head = 5 if self.format == "yolov5" else 4
        if predictions.shape[-1] <= head:
            raise InvalidArgument(
                f"input 'predictions' has shape {list(inputs['predictions'].shape)}, too few "
                f"values per candidate for format {self.format}"
            )
        scores = predictions[:, :, head:]
        if self.format == "yolov5":
            scores = scores * predictions[:, :, 4:5]
        return _xyxy(predictions[:, :, :4]), scores

    def _one(
        self, boxes: FloatArray, scores: FloatArray, geometry: npt.NDArray[Any] | None
    ) -> tuple[FloatArray, FloatArray, npt.NDArray[np.int32]]:
        classes = scores.argmax(axis=1)
        best = np.take_along_axis(scores, classes[:, None], axis=1)[:, 0]
        chosen = np.flatnonzero(best >= self.score_threshold)
        if len(chosen) > self.max_candidates:
            top = np.argpartition(-best[chosen], self.max_candidates - 1)[: self.max_candidates]
            chosen = chosen[top]
        boxes, best, classes = boxes[chosen], best[chosen], classes[chosen]
        if self.per_class and len(chosen):
            span = 2.0 * float(np.abs(boxes).max()) + 1.0  # classes never overlap, even < 0
            keep = greedy_nms(
                boxes + (classes * span)[:, None], best, self.iou_threshold, self.max_detections
            )
        else:
            keep = greedy_nms(boxes, best, self.iou_threshold, self.max_detections)
        kept = boxes[keep]
        if geometry is not None:
            scale_x, scale_y, pad_x, pad_y, width, height = (float(v) for v in geometry)
            if scale_x <= 0 or scale_y <= 0:
                raise InvalidArgument("input 'geometry' holds a scale that is not positive")
            offset = np.array([pad_x, pad_y, pad_x, pad_y], dtype=np.float32)
            scale = np.array([scale_x, scale_y, scale_x, scale_y], dtype=np.float32)
            kept = np.divide(kept - offset, scale, dtype=np.float32)
            np.clip(kept[:, 0::2], 0.0, width, out=kept[:, 0::2])
            np.clip(kept[:, 1::2], 0.0, height, out=kept[:, 1::2])
        return (
            kept.astype(np.float32),
            best[keep].astype(np.float32),
            classes[keep].astype(np.int32),
        )


def _xyxy(boxes: FloatArray) -> FloatArray:
    """(cx, cy, w, h) -> (x1, y1, x2, y2) on the last axis."""
    half = boxes[..., 2:4] / 2
    return np.concatenate([boxes[..., 0:2] - half, boxes[..., 0:2] + half], axis=-1)


def greedy_nms(
    boxes: FloatArray, scores: FloatArray, iou_threshold: float, limit: int
) -> npt.NDArray[np.intp]:
    """Indices of the boxes kept, best first: each kept box removes every remaining box that
    overlaps it by more than ``iou_threshold`` (intersection over union)."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < limit:
        first, rest = order[0], order[1:]
        keep.append(int(first))
        width = np.clip(np.minimum(x2[first], x2[rest]) - np.maximum(x1[first], x1[rest]), 0, None)
        height = np.clip(np.minimum(y2[first], y2[rest]) - np.maximum(y1[first], y1[rest]), 0, None)
        inter = width * height
        union = areas[first] + areas[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)
