"""Built-in transforms: the steps of a pipeline that are not models.

A transform takes named arrays whose first dimension is the batch and returns named arrays with
the same batch; each one is vectorised (numpy over the whole batch, or one library call per
image), never a Python loop over elements. Its parameters come from model.yaml and are checked
when the pipeline loads (unknown keys and bad values are load errors naming the step); bad data
at request time is an InvalidArgument, which the pipeline reports with the step named.

The transforms are found by name through ``TRANSFORMS`` ("module:Class", imported on first use)
so that a pipeline without images never imports Pillow. This module holds the small generic
ones (normalize, layout, topk, threshold); images.py has image_decode and resize,
detection.py has nms.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from modelserve.errors import InvalidArgument, ModelLoadError
from modelserve.runtimes.base import Arrays
from modelserve.types import as_object_array

__all__ = [
    "TRANSFORMS",
    "Layout",
    "Normalize",
    "Params",
    "Threshold",
    "TopK",
    "Transform",
    "TypeMap",
    "resolve_transform",
]

TRANSFORMS: Mapping[str, str] = {
    "image_decode": "modelserve.pipelines.images:ImageDecode",
    "resize": "modelserve.pipelines.images:Resize",
    "normalize": "modelserve.pipelines.steps:Normalize",
    "layout": "modelserve.pipelines.steps:Layout",
    "topk": "modelserve.pipelines.steps:TopK",
    "nms": "modelserve.pipelines.detection:NMS",
    "threshold": "modelserve.pipelines.steps:Threshold",
}

TypeMap = Mapping[str, str | None]
"""Tensor name -> V2 datatype, None where it is not known before the request."""

NUMERIC = frozenset(
    ("UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
     "FP64")
)  # fmt: skip
FLOATS = frozenset(("FP16", "FP32", "FP64"))


class Params:
    """A transform's parameters, read with checks; ``done`` refuses keys nobody read."""

    def __init__(self, transform: str, values: Mapping[str, Any]) -> None:
        self._transform = transform
        self._values = dict(values)
        self._read: set[str] = set()

    def _get(self, key: str, default: Any) -> Any:
        self._read.add(key)
        return self._values.get(key, default)

    def error(self, key: str, message: str) -> ModelLoadError:
        return ModelLoadError(f"{self._transform} parameter '{key}' {message}")

    def number(
        self, key: str, default: float, low: float | None = None, high: float | None = None
    ) -> float:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise self.error(key, f"must be within [{low}, {high}], got {value}")
        return float(value)

    def integer(self, key: str, default: int, low: int = 0, high: int | None = None) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {value!r}")
        if value < low or (high is not None and value > high):
            raise self.error(key, f"must be within [{low}, {high or 'inf'}], got {value}")
        return value

    def text(self, key: str, default: str) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {value!r}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {value!r}")
        return value

    def choice(self, key: str, default: str, options: Sequence[str]) -> str:
        value = self._get(key, default)
        if value not in options:
            raise self.error(key, f"must be one of {list(options)}, got {value!r}")
        return str(value)

    def numbers(self, key: str, default: Sequence[float]) -> tuple[float, ...]:
        """A number or a list of numbers (one per channel)."""
        value = self._get(key, list(default))
        items = value if isinstance(value, list) else [value]
        if not items or any(isinstance(v, bool) or not isinstance(v, int | float) for v in items):
            raise self.error(key, f"must be a number or a list of numbers, got {value!r}")
        return tuple(float(v) for v in items)

    def strings(self, key: str) -> tuple[str, ...] | None:
        value = self._get(key, None)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, f"must be a list of strings, got {value!r}")
        return tuple(value)

    def done(self) -> None:
        unknown = sorted(set(self._values) - self._read)
        if unknown:
            raise ModelLoadError(
                f"{self._transform} has no parameter(s) {unknown}; it takes {sorted(self._read)}"
            )


class Transform(ABC):
    """One built-in step. Subclasses read their parameters in ``__init__`` (through ``Params``)
    and declare their tensors."""

    name: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]]
    """Inputs every use must wire."""
    optional_inputs: ClassVar[tuple[str, ...]] = ()
    inline: ClassVar[bool] = False
    """Cheap enough to run on the event loop (no thread hop)."""

    @abstractmethod
    def __init__(self, params: Params) -> None: ...

    @abstractmethod
    def outputs(self) -> tuple[str, ...]:
        """The outputs it produces (a step may wire any of them)."""

    @abstractmethod
    def output_types(self, types: TypeMap) -> dict[str, str | None]:
        """The datatype of each output given those of its wired inputs (None: unknown);
        raises ModelLoadError for an input datatype it cannot take."""

    @abstractmethod
    def __call__(self, inputs: Arrays) -> Arrays:
        """Run on one request's batch."""


def resolve_transform(name: str) -> type[Transform]:
    target = TRANSFORMS.get(name)
    if target is None:
        raise ModelLoadError(f"unknown transform '{name}'; expected one of {sorted(TRANSFORMS)}")
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    assert isinstance(cls, type) and issubclass(cls, Transform)
    return cls


def expect_type(transform: str, tensor: str, datatype: str | None, allowed: frozenset[str]) -> None:
    if datatype is not None and datatype not in allowed:
        raise ModelLoadError(
            f"{transform} input '{tensor}' must be one of {sorted(allowed)}, not {datatype}"
        )


def batched(name: str, array: npt.NDArray[Any], min_ndim: int = 1) -> npt.NDArray[Any]:
    """A request-time check that a tensor has the batch dimension and at least ``min_ndim``."""
    if (
        array.dtype == object
        and array.ndim >= 1
        and array.size
        and isinstance(array.flat[0], np.ndarray)
    ):
        raise InvalidArgument(f"input '{name}' holds images of different sizes; resize them first")
    if array.ndim < min_ndim:
        raise InvalidArgument(
            f"input '{name}' has shape {list(array.shape)}; it needs at least {min_ndim} "
            "dimensions (the first is the batch)"
        )
    return array


# ---- normalize --------------------------------------------------------------------------------

NORMALIZE_TYPES = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64}


class Normalize(Transform):
    """``images`` -> ``images``: ``(x * scale - mean) / std``, mean and std per channel (or one
    value for all), on the channel axis (``channel_axis``, default -1: HWC). One fused multiply
    and add over the batch, in ``dtype`` (FP32)."""

    name = "normalize"
    inputs = ("images",)

    def __init__(self, params: Params) -> None:
        self.scale = params.number("scale", 1.0)
        self.mean = np.asarray(params.numbers("mean", (0.0,)), dtype=np.float64)
        std = np.asarray(params.numbers("std", (1.0,)), dtype=np.float64)
        if np.any(std == 0):
            raise params.error("std", "must not hold zeros")
        self.std = std
        if len(self.mean) != len(self.std) and 1 not in (len(self.mean), len(self.std)):
            raise params.error("std", "must have as many values as 'mean' (or one)")
        self.channel_axis = params.integer("channel_axis", -1, low=-8, high=8)
        self.datatype = params.choice("dtype", "FP32", tuple(NORMALIZE_TYPES))
        self.dtype = NORMALIZE_TYPES[self.datatype]
        params.done()
        # x * scale / std - mean / std: one multiply and one add per element
        channels = max(len(self.mean), len(self.std))
        self._mul = np.broadcast_to(self.scale / self.std, channels)
        self._add = np.broadcast_to(-self.mean / self.std, channels)

    def outputs(self) -> tuple[str, ...]:
        return ("images",)

    def output_types(self, types: TypeMap) -> dict[str, str | None]:
        expect_type(self.name, "images", types.get("images"), NUMERIC)
        return {"images": self.datatype}

    def __call__(self, inputs: Arrays) -> Arrays:
        images = batched("images", inputs["images"], 2)
        axis = self.channel_axis if self.channel_axis >= 0 else images.ndim + self.channel_axis
        if not 0 < axis < images.ndim:
            raise InvalidArgument(
                f"input 'images' of shape {list(images.shape)} has no channel axis "
                f"{self.channel_axis}"
            )
        channels = images.shape[axis]
        if len(self._mul) not in (1, channels):
            raise InvalidArgument(
                f"input 'images' has {channels} channels, but mean/std give {len(self._mul)}"
            )
        shape = [1] * images.ndim
        shape[axis] = len(self._mul)
        mul = self._mul.astype(self.dtype).reshape(shape)
        add = self._add.astype(self.dtype).reshape(shape)
        out = np.multiply(images, mul, dtype=self.dtype)
        out += add
        return {"images": out}


# ---- layout -----------------------------------------------------------------------------------


class Layout(Transform):
    """``images`` -> ``images`` with its axes reordered: ``from: HWC`` ``to: CHW`` (any
    permutation of the same letters; the batch dimension in front is kept). The result is
    contiguous, as frameworks want it."""

    name = "layout"
    inputs = ("images",)

    def __init__(self, params: Params) -> None:
        source = params.text("from", "HWC")
        target = params.text("to", "CHW")
        for key, value in (("from", source), ("to", target)):
            if not value.isalpha() or len(set(value)) != len(value):
                raise params.error(key, f"must be axis letters such as 'HWC', got {value!r}")
        if sorted(source) != sorted(target):
            raise params.error("to", f"must reorder the letters of 'from' ({source}), got {target}")
        params.done()
        self.source, self.target = source, target
        self.axes = tuple(source.index(letter) for letter in target)

    def outputs(self) -> tuple[str, ...]:
        return ("images",)

    def output_types(self, types: TypeMap) -> dict[str, str | None]:
        return {"images": types.get("images")}

    def __call__(self, inputs: Arrays) -> Arrays:
        images = batched("images", inputs["images"])
        if images.ndim != len(self.axes) + 1:
            raise InvalidArgument(
                f"input 'images' has shape {list(images.shape)}; layout {self.source} needs "
                f"{len(self.axes) + 1} dimensions (batch first)"
            )
        perm = (0, *(axis + 1 for axis in self.axes))
        return {"images": np.ascontiguousarray(images.transpose(perm))}


# ---- topk -------------------------------------------------------------------------------------


class TopK(Transform):
    """``scores`` [N, C] -> the ``k`` best per row: ``scores`` [N, k] (best first) and
    ``indices`` INT64 [N, k]; with ``labels`` (one per class) also ``labels`` BYTES [N, k].
    ``softmax: true`` turns logits into probabilities first."""

    name = "topk"
    inputs = ("scores",)
    inline = True

    def __init__(self, params: Params) -> None:
        self.k = params.integer("k", 5, low=1, high=65536)
        self.softmax = params.boolean("softmax", False)
        labels = params.strings("labels")
        params.done()
        self.labels = as_object_array([s.encode() for s in labels]) if labels else None

    def outputs(self) -> tuple[str, ...]:
        return ("scores", "indices", "labels") if self.labels is not None else ("scores", "indices")

    def output_types(self, types: TypeMap) -> dict[str, str | None]:
        given = types.get("scores")
        expect_type(self.name, "scores", given, NUMERIC)
        out: dict[str, str | None] = {
            "scores": "FP32" if self.softmax else given,
            "indices": "INT64",
        }
        if self.labels is not None:
            out["labels"] = "BYTES"
        return out

    def __call__(self, inputs: Arrays) -> Arrays:
        scores = batched("scores", inputs["scores"], 2)
        scores = scores.reshape(scores.shape[0], -1)
        if self.softmax:
            shifted = scores.astype(np.float32) - scores.max(axis=1, keepdims=True)
            np.exp(shifted, out=shifted)
            scores = shifted / shifted.sum(axis=1, keepdims=True)
        classes = scores.shape[1]
        k = min(self.k, classes)
        if k < classes:
            part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(classes), scores.shape)
        picked = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-picked, axis=1, kind="stable")
        indices = np.take_along_axis(part, order, axis=1).astype(np.int64)
        out: Arrays = {"scores": np.take_along_axis(picked, order, axis=1), "indices": indices}
        if self.labels is not None:
            if classes > len(self.labels):
                raise InvalidArgument(
                    f"input 'scores' has {classes} classes but 'labels' names {len(self.labels)}"
                )
            out["labels"] = self.labels[indices]
        return out


# ---- threshold --------------------------------------------------------------------------------


class Threshold(Transform):
    """``values`` -> ``mask`` BOOL, true where a value is >= ``threshold`` (``> `` with
    ``inclusive: false``): a decision from a score, e.g. whether to raise an alert."""

    name = "threshold"
    inputs = ("values",)
    inline = True

    def __init__(self, params: Params) -> None:
        self.threshold = params.number("threshold", 0.5)
        self.inclusive = params.boolean("inclusive", True)
        params.done()

    def outputs(self) -> tuple[str, ...]:
        return ("mask",)

    def output_types(self, types: TypeMap) -> dict[str, str | None]:
        expect_type(self.name, "values", types.get("values"), NUMERIC)
        return {"mask": "BOOL"}

    def __call__(self, inputs: Arrays) -> Arrays:
        values = batched("values", inputs["values"])
        if self.inclusive:
            return {"mask": values >= self.threshold}
        return {"mask": values > self.threshold}
