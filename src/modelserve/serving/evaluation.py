"""A model's metrics on held-out data: quality (classification, probabilities, regression) from
its predictions against the truth, and latency from one-row calls.

The formulas are the textbook ones (scikit-learn's definitions: macro averages over the classes
present in the truth or the predictions, ROC AUC one-vs-rest for several classes, log loss with
probabilities clipped to [1e-15, 1 - 1e-15]); numpy only, so that a server with no
scikit-learn installed can validate its ONNX models.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modelserve.runtimes.base import Arrays

__all__ = ["Predictions", "compute_metrics", "measure_latency", "predict_all"]

Predict = Callable[[Arrays], Arrays]
Array = npt.NDArray[Any]

LATENCY_ROWS = 1000
"""One-row calls timed for the latency metrics, at most."""
LATENCY_METRICS = {
    "mean_latency_ms": None,
    "p50_latency_ms": 50.0,
    "p90_latency_ms": 90.0,
    "p95_latency_ms": 95.0,
    "p99_latency_ms": 99.0,
}
CLASSIFICATION = frozenset(
    {"accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_weighted"}
)
PROBABILISTIC = frozenset({"log_loss", "roc_auc"})
REGRESSION = frozenset({"mae", "mse", "rmse", "r2", "max_error", "mape"})


class EvaluationError(Exception):
    """The predictions cannot give a metric (wrong output kind, no probabilities...)."""


@dataclass(frozen=True, slots=True)
class Predictions:
    outputs: Arrays
    rows: int


def _rows(arrays: Arrays) -> int:
    return len(next(iter(arrays.values())))


def predict_all(predict: Predict, features: Arrays, batch: int) -> Predictions:
    """Every row through ``predict``, ``batch`` rows per call (0: the model has no batch
    dimension, so one row per call without one)."""
    rows = _rows(features)
    parts: list[Arrays] = []
    if batch <= 0:
        for index in range(rows):
            out = predict({k: v[index] for k, v in features.items()})
            parts.append({k: np.asarray(v)[np.newaxis] for k, v in out.items()})
    else:
        for start in range(0, rows, batch):
            parts.append(predict({k: v[start : start + batch] for k, v in features.items()}))
    outputs = {name: np.concatenate([np.asarray(p[name]) for p in parts]) for name in parts[0]}
    return Predictions(outputs, rows)


def measure_latency(predict: Predict, features: Arrays, batched: bool) -> dict[str, float]:
    """Latency metrics (ms) of one-row calls over the first LATENCY_ROWS rows."""
    rows = min(_rows(features), LATENCY_ROWS)
    times = np.empty(rows)
    for index in range(rows):
        if batched:
            arrays = {k: v[index : index + 1] for k, v in features.items()}
        else:
            arrays = {k: v[index] for k, v in features.items()}
        started = time.perf_counter_ns()
        predict(arrays)
        times[index] = (time.perf_counter_ns() - started) / 1e6
    return {
        name: float(times.mean() if q is None else np.percentile(times, q))
        for name, q in LATENCY_METRICS.items()
    }


# ---- labels -------------------------------------------------------------------------------------


def _as_text(array: Array) -> Array:
    flat = [
        v.decode("utf-8", "replace") if isinstance(v, bytes | bytearray) else str(v)
        for v in array.ravel()
    ]
    return np.asarray(flat, dtype=object)


def _normalise(truth: Array, predicted: Array) -> tuple[Array, Array]:
    """Truth and predicted labels comparable: numbers stay numbers, else both become text."""
    if truth.dtype.kind in "biuf" and predicted.dtype.kind in "biuf":
        return truth.astype(np.float64), predicted.astype(np.float64)
    return _as_text(truth), _as_text(predicted)


def predicted_labels(output: Array, classes: Sequence[str], truth: Array) -> Array:
    """Labels from a model output: as they are (1-D labels), the argmax of per-class scores
    (mapped to ``classes`` when known), or a 0.5 cut of a positive-class probability."""
    if output.ndim == 2 and output.shape[1] > 1:
        index: Array = np.asarray(output.argmax(axis=1))
        if len(classes) != output.shape[1]:
            return index
        names: Array = np.asarray(list(classes), dtype=object)[index]
        if truth.dtype.kind in "biuf":
            try:
                return names.astype(np.float64)
            except ValueError:
                pass
        return names
    flat = output.reshape(len(output), -1)
    if flat.shape[1] != 1:
        raise EvaluationError(f"cannot read labels from an output of shape {list(output.shape)}")
    values = flat[:, 0]
    binary_truth = truth.dtype.kind in "biuf" and set(np.unique(truth).tolist()) <= {0, 1}
    if values.dtype.kind == "f" and binary_truth and np.all((values >= 0) & (values <= 1)):
        return (values > 0.5).astype(np.int64)
    return values


def _confusion(truth: Array, predicted: Array) -> tuple[Array, Array]:
    """Per class (sorted): true positives, and the counts in truth and in the predictions."""
    classes, inverse = np.unique(np.concatenate([truth, predicted]), return_inverse=True)
    t, p = inverse[: len(truth)], inverse[len(truth) :]
    n = len(classes)
    tp = np.bincount(t[t == p], minlength=n).astype(np.float64)
    in_truth = np.bincount(t, minlength=n).astype(np.float64)
    in_pred = np.bincount(p, minlength=n).astype(np.float64)
    return tp, np.stack([in_truth, in_pred])


def _divide(a: Array, b: Array) -> Array:
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def classification_metrics(truth: Array, predicted: Array) -> dict[str, float]:
    truth, predicted = _normalise(truth, predicted)
    tp, counts = _confusion(truth, predicted)
    in_truth, in_pred = counts
    precision = _divide(tp, in_pred)
    recall = _divide(tp, in_truth)
    f1 = _divide(2 * precision * recall, precision + recall)
    present = in_truth > 0
    return {
        "accuracy": float((truth == predicted).mean()),
        "balanced_accuracy": float(recall[present].mean()),
        "precision_macro": float(precision.mean()),
        "recall_macro": float(recall.mean()),
        "f1_macro": float(f1.mean()),
        "f1_weighted": float((f1 * in_truth).sum() / in_truth.sum()),
    }


# ---- probabilities ------------------------------------------------------------------------------


def _average_ranks(scores: Array) -> Array:
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse]


def _binary_auc(positive: Array, scores: Array) -> float:
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise EvaluationError("roc_auc needs both classes in the truth")
    ranks = _average_ranks(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def probability_metrics(
    truth: Array, probabilities: Array, classes: Sequence[str]
) -> dict[str, float]:
    """log_loss and roc_auc from per-class probabilities ([N, k], columns in ``classes``
    order, or 0..k-1) or the positive class's probability ([N])."""
    proba = probabilities.astype(np.float64)
    if proba.ndim == 1 or (proba.ndim == 2 and proba.shape[1] == 1):
        p1 = proba.reshape(-1)
        proba = np.stack([1 - p1, p1], axis=1)
    names = list(classes) if len(classes) == proba.shape[1] else list(range(proba.shape[1]))
    text_truth = _as_text(truth)
    column = {str(name): i for i, name in enumerate(names)}
    if truth.dtype.kind in "f":
        text_truth = np.asarray([str(int(v)) if v == int(v) else str(v) for v in truth])
    index = np.asarray([column.get(str(v), -1) for v in text_truth])
    if (index < 0).any():
        unknown = sorted({str(v) for v, i in zip(text_truth, index, strict=True) if i < 0})
        raise EvaluationError(f"labels {unknown[:5]} have no probability column")
    picked = np.clip(proba[np.arange(len(index)), index], 1e-15, 1 - 1e-15)
    metrics = {"log_loss": float(-np.log(picked).mean())}
    if proba.shape[1] == 2:
        metrics["roc_auc"] = _binary_auc(index == 1, proba[:, 1])
    else:
        aucs = [
            _binary_auc(index == k, proba[:, k])
            for k in range(proba.shape[1])
            if 0 < (index == k).sum() < len(index)
        ]
        if not aucs:
            raise EvaluationError("roc_auc needs at least two classes in the truth")
        metrics["roc_auc"] = float(np.mean(aucs))
    return metrics


# ---- regression ---------------------------------------------------------------------------------


def regression_metrics(truth: Array, predicted: Array) -> dict[str, float]:
    if truth.dtype.kind not in "biuf":
        raise EvaluationError("regression metrics need a numeric label column")
    y = truth.astype(np.float64).reshape(len(truth), -1)
    p = predicted.astype(np.float64).reshape(len(predicted), -1)
    if y.shape != p.shape:
        raise EvaluationError(
            f"predictions of shape {list(p.shape)} against labels of shape {list(y.shape)}"
        )
    error = p - y
    mse = float((error**2).mean())
    spread = float(((y - y.mean(axis=0)) ** 2).sum())
    nonzero = y != 0
    return {
        "mae": float(np.abs(error).mean()),
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "r2": 1.0 - float((error**2).sum()) / spread if spread > 0 else 0.0,
        "max_error": float(np.abs(error).max()),
        "mape": float((np.abs(error[nonzero]) / np.abs(y[nonzero])).mean())
        if nonzero.any()
        else 0.0,
    }


# ---- all of them --------------------------------------------------------------------------------


def _pick(outputs: Arrays, chosen: str | None, preferred: Sequence[str]) -> Array:
    if chosen is not None:
        if chosen not in outputs:
            raise EvaluationError(f"the model has no output '{chosen}' ({sorted(outputs)})")
        return outputs[chosen]
    for name in preferred:
        if name in outputs:
            return outputs[name]
    return next(iter(outputs.values()))


def compute_metrics(
    wanted: Sequence[str],
    predictions: Predictions,
    truth: Array | None,
    output: str | None,
    classes: Sequence[str],
) -> dict[str, float]:
    """The quality metrics among ``wanted`` (latency ones are measured separately)."""
    names = set(wanted)
    found: dict[str, float] = {}
    outputs = predictions.outputs
    if not names & (CLASSIFICATION | PROBABILISTIC | REGRESSION):
        return found
    if truth is None:
        raise EvaluationError("quality metrics need the label column")
    if names & CLASSIFICATION:
        predicted = _pick(outputs, output, ("label", "prediction"))
        found.update(classification_metrics(truth, predicted_labels(predicted, classes, truth)))
    if names & PROBABILISTIC:
        source = _pick(outputs, None if "probabilities" in outputs else output,
                       ("probabilities", "prediction"))  # fmt: skip
        if source.dtype.kind != "f":
            raise EvaluationError("log_loss and roc_auc need probabilities (a float output)")
        found.update(probability_metrics(truth, source, classes))
    if names & REGRESSION:
        found.update(regression_metrics(truth, _pick(outputs, output, ("prediction",))))
    return {name: value for name, value in found.items() if name in names}
