"""What a monitored model's prediction is, and the rows an inference event stores.

The compared output is ``monitoring.prediction_output``, else an output named ``label``, else
the first output. The task is ``monitoring.task``, else inferred from that output: integer,
boolean or BYTES values, or a 2-D float output of several columns (scores, of which the
prediction is the arg-max), make a classifier; a float output of one value per row a
regressor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelserve.config.monitoring import MonitoringConfig
from modelserve.monitoring.events import InferenceEvent
from modelserve.monitoring.store import LabelRow, PredictionRow, canonical, number
from modelserve.types import TensorSpec

__all__ = ["Target", "label_rows", "target_for"]


@dataclass(frozen=True, slots=True)
class Target:
    output: str
    task: str
    """``classification`` or ``regression``."""
    scores: bool
    """The output holds one score per class: the prediction is the arg-max of each row."""


def target_for(config: MonitoringConfig, outputs: Sequence[TensorSpec]) -> Target | None:
    """What to compare for a version with these outputs (None: it has no outputs)."""
    if not outputs:
        return None
    by_name = {spec.name: spec for spec in outputs}
    if config.prediction_output is not None:
        spec = by_name.get(config.prediction_output)
        if spec is None:
            raise ValueError(
                f"monitoring.prediction_output '{config.prediction_output}' is not an output "
                f"(outputs: {', '.join(sorted(by_name))})"
            )
    else:
        spec = by_name.get("label", outputs[0])
    width = spec.shape[-1] if len(spec.shape) >= 2 else 1
    floating = spec.datatype in ("FP16", "FP32", "FP64", "BF16")
    scores = floating and len(spec.shape) >= 2 and (width == -1 or width > 1)
    task = config.task
    if task is None:
        task = "regression" if floating and not scores else "classification"
    return Target(spec.name, task, scores and task == "classification")


def prediction_rows(event: InferenceEvent, target: Target) -> list[PredictionRow]:
    """One row per row of the compared output (none when the event has not got it)."""
    for tensor in event.outputs:
        if tensor.name == target.output:
            data = tensor.data
            break
    else:
        return []
    if target.scores and data.ndim >= 2:
        values: Any = np.argmax(data.reshape(data.shape[0], -1), axis=1)
    elif data.ndim == 0:
        values = data.reshape(1)
    else:
        values = data.reshape(data.shape[0], -1)[:, 0] if data.ndim >= 2 else data
    items = values.tolist()
    return [
        PredictionRow(
            event.model,
            event.version,
            event.id,
            row,
            event.arrived_ns,
            canonical(value),
            number(value),
        )
        for row, value in enumerate(items)
    ]


def label_rows(ident: str, label: Any) -> list[LabelRow]:
    """The rows of one label: a scalar labels row 0; a list labels rows 0…N-1 (a batch)."""
    values = label if isinstance(label, list) else [label]
    rows = []
    for row, value in enumerate(values):
        if isinstance(value, (list, dict)):
            raise ValueError(f"label of '{ident}': a label is a value or a list of values")
        rows.append(LabelRow(ident, row, canonical(value), number(value)))
    return rows
