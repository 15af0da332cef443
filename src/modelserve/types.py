"""Transport-neutral data types: what the dataplane receives and returns.

The per-request types (Tensor, RequestedOutput, InferenceRequest, InferenceResponse) are slotted
but not frozen: a frozen dataclass pays an ``object.__setattr__`` per field on every request.
Treat them as immutable all the same.

Tensors are numpy arrays; BYTES tensors are numpy object arrays of ``bytes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

ParamValue = str | int | float | bool
Parameters = Mapping[str, ParamValue]

EMPTY_PARAMS: Parameters = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A declared model input or output. ``shape`` uses -1 for a variable dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    accepts: tuple[str, ...] = ()
    """Other datatypes a request may send for this input; they are cast to ``datatype``
    (widening casts only: every value stays exactly the same) before the model sees them."""


@dataclass(slots=True)
class Tensor:
    """A decoded tensor: ``data`` already has ``shape`` and the numpy dtype of ``datatype``."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: npt.NDArray[Any]
    parameters: Parameters = field(default_factory=lambda: EMPTY_PARAMS)


@dataclass(slots=True)
class RequestedOutput:
    name: str
    parameters: Parameters = field(default_factory=lambda: EMPTY_PARAMS)


@dataclass(slots=True)
class InferenceRequest:
    model_name: str
    inputs: tuple[Tensor, ...]
    model_version: str = ""
    id: str | None = None
    parameters: Parameters = field(default_factory=lambda: EMPTY_PARAMS)
    outputs: tuple[RequestedOutput, ...] | None = None
    """``None`` asks for every output of the model."""


@dataclass(slots=True)
class InferenceResponse:
    model_name: str
    model_version: str
    outputs: tuple[Tensor, ...]
    id: str | None = None
    parameters: Parameters = field(default_factory=lambda: EMPTY_PARAMS)


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True, slots=True)
class ServerMetadata:
    name: str
    version: str
    extensions: tuple[str, ...]


class ModelState(StrEnum):
    LOADING = "LOADING"
    READY = "READY"
    UNLOADING = "UNLOADING"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class IndexEntry:
    name: str
    version: str
    state: ModelState
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RuntimeSignature:
    """What a runtime found out about its model by looking at the artifact."""

    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    batchable: bool = False
    labels: tuple[str, ...] = field(default=())
    """Class names, for Triton's classification extension (serving/classification.py)."""


def shape_of(array: npt.NDArray[Any]) -> tuple[int, ...]:
    return tuple(int(d) for d in array.shape)


def as_object_array(items: list[bytes]) -> npt.NDArray[np.object_]:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out
