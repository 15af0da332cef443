"""Live accuracy from the store's aggregates: classification figures from a confusion matrix,
regression figures from sums of errors. Pure functions; the store does the counting.

- ``accuracy``: correct / labelled.
- ``precision_macro``, ``recall_macro``, ``f1_macro``: per class, averaged with equal weight
  over the classes seen in the predictions or the labels (scikit-learn's ``average="macro"``
  with ``zero_division=0``: a class never predicted has precision 0).
- ``mae``, ``rmse``: mean absolute and root mean squared error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from modelserve.monitoring.store import Confusion, ErrorSums, Store

__all__ = ["Figures", "accuracy_since", "classification", "regression"]


@dataclass(frozen=True, slots=True)
class Figures:
    """The figures of one version over one window; ``labelled`` rows were compared."""

    labelled: int
    accuracy: float | None = None
    precision_macro: float | None = None
    recall_macro: float | None = None
    f1_macro: float | None = None
    mae: float | None = None
    rmse: float | None = None

    def document(self) -> dict[str, float | int]:
        """The JSON of the monitoring API: the figures that have a value, and ``labelled``."""
        doc: dict[str, float | int] = {"labelled": self.labelled}
        for key in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "mae", "rmse"):
            value = getattr(self, key)
            if value is not None:
                doc[key] = round(value, 6)
        return doc


def classification(confusion: Confusion) -> Figures:
    total = confusion.total
    if total == 0:
        return Figures(0)
    correct = sum(n for (pred, label), n in confusion.pairs.items() if pred == label)
    predicted: dict[str, int] = {}
    actual: dict[str, int] = {}
    for (pred, label), n in confusion.pairs.items():
        predicted[pred] = predicted.get(pred, 0) + n
        actual[label] = actual.get(label, 0) + n
    classes = sorted(set(predicted) | set(actual))
    precisions, recalls, f1s = [], [], []
    for cls in classes:
        hits = confusion.pairs.get((cls, cls), 0)
        precision = hits / predicted[cls] if predicted.get(cls) else 0.0
        recall = hits / actual[cls] if actual.get(cls) else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        precisions.append(precision)
        recalls.append(recall)
        f1s.append(f1)
    count = len(classes)
    return Figures(
        total,
        accuracy=correct / total,
        precision_macro=sum(precisions) / count,
        recall_macro=sum(recalls) / count,
        f1_macro=sum(f1s) / count,
    )


def regression(sums: ErrorSums) -> Figures:
    if sums.count == 0:
        return Figures(0)
    return Figures(
        sums.count, mae=sums.abs_sum / sums.count, rmse=math.sqrt(sums.sq_sum / sums.count)
    )


def accuracy_since(
    store: Store, model: str, version: str, since_ns: int, min_labels: int = 1
) -> Figures | None:
    """The classification figures of ``version`` over the predictions made since
    ``since_ns`` (wall clock, ns), or None while fewer than ``min_labels`` are labelled: the
    question a canary analysis asks (blocking; call it off the event loop)."""
    figures = classification(store.confusion(model, version, since_ns))
    return figures if figures.labelled >= min_labels and figures.labelled > 0 else None
