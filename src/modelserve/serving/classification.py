"""Triton's and the V2 spec's classification extension: an output requested with
``parameters: {"classification": K}`` is answered as the top K classes of each row, as BYTES
``"score:index:label"`` (``"score:index"`` for a class without a label), in Triton's own format:
scores of float outputs printed as C's ``%f``, of integer outputs as integers; shape ``[K]`` for a
model without batching, ``[batch, K]`` with it; K larger than the number of classes gives them all.

Labels come from the output's ``labels`` file (``label_filename`` in config.pbtxt), else
``labels.txt`` in the model folder, else the classes the artifact names (a scikit-learn
classifier's ``classes_``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from modelserve.config.model import ModelConfig
from modelserve.errors import InvalidArgument, ModelLoadError
from modelserve.types import RequestedOutput, TensorSpec

__all__ = ["LABELS_FILE", "classify", "load_labels", "requested_classes"]

LABELS_FILE = "labels.txt"
CLASSIFICATION = "classification"

_NUMERIC = frozenset(
    {
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "FP16",
        "FP32",
        "FP64",
    }
)


def _read(path: Path, model_dir: Path) -> tuple[str, ...]:
    resolved = path.resolve()
    if model_dir.resolve() not in resolved.parents:
        raise ModelLoadError(f"labels file '{path.name}' leads outside {model_dir}")
    try:
        text = resolved.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"labels file {path}: {exc}") from None
    return tuple(text.splitlines())


def load_labels(
    model_dir: Path,
    config: ModelConfig,
    outputs: tuple[TensorSpec, ...],
    artifact_labels: tuple[str, ...],
) -> dict[str, tuple[str, ...]]:
    """The labels of each output that has some (a named file that is missing is a load
    error); the artifact's classes label only outputs with one score per class."""
    declared = {t.name: t.labels for t in config.outputs or () if t.labels is not None}
    default: tuple[str, ...] = artifact_labels
    if (model_dir / LABELS_FILE).is_file():
        default = _read(model_dir / LABELS_FILE, model_dir)
    labels: dict[str, tuple[str, ...]] = {}
    for spec in outputs:
        name = declared.get(spec.name)
        if name is not None:
            if not (model_dir / name).is_file():
                raise ModelLoadError(f"output '{spec.name}': labels file '{name}' not found")
            labels[spec.name] = _read(model_dir / name, model_dir)
        elif default and (default is not artifact_labels or _fits(spec, len(default))):
            labels[spec.name] = default
    return labels


def _fits(spec: TensorSpec, classes: int) -> bool:
    """The artifact's classes label an output with one score per class (its last dimension)."""
    return bool(spec.shape) and spec.shape[-1] == classes and spec.datatype in _NUMERIC


def requested_classes(
    requested: tuple[RequestedOutput, ...] | None, specs: Mapping[str, TensorSpec]
) -> dict[str, int] | None:
    """The class count asked for each output (None when no output asks for classes); a bad
    count or an output that cannot be classified is InvalidArgument."""
    if requested is None:
        return None
    wanted: dict[str, int] | None = None
    for out in requested:
        count = out.parameters.get(CLASSIFICATION)
        if count is None:
            continue
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InvalidArgument(
                f"output '{out.name}': parameter 'classification' must be a non-negative "
                f"integer, got {count!r}"
            )
        if count == 0:
            continue  # Triton: 0 asks for the tensor itself
        spec = specs.get(out.name)
        if spec is not None and spec.datatype not in _NUMERIC:
            raise InvalidArgument(
                f"output '{out.name}': class result not available for output due to "
                f"unsupported type '{spec.datatype}'"
            )
        wanted = {} if wanted is None else wanted
        wanted[out.name] = count
    return wanted


def _score(value: Any, floating: bool) -> str:
    return f"{float(value):f}" if floating else str(int(value))


def classify(
    array: npt.NDArray[Any], count: int, batched: bool, labels: tuple[str, ...]
) -> npt.NDArray[np.object_]:
    """The top ``count`` classes of each row of ``array`` (every element past the batch
    dimension is a class) as ``score:index[:label]`` bytes."""
    rows = array.reshape(array.shape[0] if batched else 1, -1)
    k = min(count, rows.shape[1])
    floating = array.dtype.kind == "f"
    order = np.argsort(-rows.astype(np.float64), axis=1, kind="stable")[:, :k]
    out = np.empty((rows.shape[0], k), dtype=object)
    for r in range(rows.shape[0]):
        for j, index in enumerate(order[r]):
            text = f"{_score(rows[r, index], floating)}:{index}"
            if index < len(labels):
                text = f"{text}:{labels[index]}"
            out[r, j] = text.encode("utf-8")
    return out if batched else out.reshape(k)
