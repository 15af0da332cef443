"""Metrics of serving/evaluation.py against scikit-learn's own implementations."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from modelserve.serving.evaluation import (
    EvaluationError,
    Predictions,
    classification_metrics,
    compute_metrics,
    measure_latency,
    predict_all,
    predicted_labels,
    probability_metrics,
    regression_metrics,
)

RNG = np.random.default_rng(0)


def test_classification_matches_sklearn() -> None:
    truth = RNG.integers(0, 4, 300)
    predicted = np.where(RNG.random(300) < 0.7, truth, RNG.integers(0, 4, 300))
    found = classification_metrics(truth, predicted)
    assert found["accuracy"] == pytest.approx(skm.accuracy_score(truth, predicted))
    assert found["balanced_accuracy"] == pytest.approx(
        skm.balanced_accuracy_score(truth, predicted)
    )
    for name, average in (("precision", "macro"), ("recall", "macro"), ("f1", "macro")):
        scorer = getattr(skm, f"{name}_score")
        assert found[f"{name}_{average}"] == pytest.approx(
            scorer(truth, predicted, average=average, zero_division=0)
        )
    assert found["f1_weighted"] == pytest.approx(skm.f1_score(truth, predicted, average="weighted"))


def test_text_and_bytes_labels_compare_as_text() -> None:
    truth = np.array(["cat", "dog", "dog"], dtype=object)
    predicted = np.array([b"cat", b"dog", b"cat"], dtype=object)
    assert classification_metrics(truth, predicted)["accuracy"] == pytest.approx(2 / 3)


def test_probability_metrics_match_sklearn() -> None:
    truth = RNG.integers(0, 3, 400)
    logits = RNG.standard_normal((400, 3)) + np.eye(3)[truth]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    found = probability_metrics(truth, proba, ())
    assert found["log_loss"] == pytest.approx(skm.log_loss(truth, proba))
    assert found["roc_auc"] == pytest.approx(
        skm.roc_auc_score(truth, proba, multi_class="ovr", average="macro")
    )
    binary = (truth == 1).astype(np.int64)
    p1 = np.round(proba[:, 1], 2)  # ties
    found = probability_metrics(binary, p1, ())
    assert found["roc_auc"] == pytest.approx(skm.roc_auc_score(binary, p1))
    assert found["log_loss"] == pytest.approx(skm.log_loss(binary, p1))
    named = probability_metrics(np.array(["b", "a"], dtype=object), np.eye(2)[[1, 0]], ("a", "b"))
    assert named["roc_auc"] == 1.0
    with pytest.raises(EvaluationError, match="have no probability column"):
        probability_metrics(np.array(["z"], dtype=object), np.eye(2)[:1], ("a", "b"))


def test_regression_matches_sklearn() -> None:
    truth = RNG.standard_normal(200) * 10 + 3
    predicted = truth + RNG.standard_normal(200)
    found = regression_metrics(truth, predicted)
    assert found["mae"] == pytest.approx(skm.mean_absolute_error(truth, predicted))
    assert found["mse"] == pytest.approx(skm.mean_squared_error(truth, predicted))
    assert found["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(truth, predicted)))
    assert found["r2"] == pytest.approx(skm.r2_score(truth, predicted))
    assert found["max_error"] == pytest.approx(skm.max_error(truth, predicted))
    assert found["mape"] == pytest.approx(skm.mean_absolute_percentage_error(truth, predicted))


def test_labels_from_scores_and_from_a_probability() -> None:
    scores = np.array([[0.1, 0.9], [0.8, 0.2]])
    assert predicted_labels(scores, ("a", "b"), np.array(["a"], dtype=object)).tolist() == [
        "b",
        "a",
    ]
    assert predicted_labels(scores, (), np.array([0, 1])).tolist() == [1, 0]
    assert predicted_labels(np.array([0.7, 0.2]), (), np.array([0, 1])).tolist() == [1, 0]


def test_compute_metrics_picks_outputs() -> None:
    truth = np.array([0, 1, 1, 0])
    outputs = {
        "label": np.array([0, 1, 0, 0]),
        "probabilities": np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]]),
    }
    found = compute_metrics(["accuracy", "roc_auc"], Predictions(outputs, 4), truth, None, ())
    assert found == {"accuracy": 0.75, "roc_auc": 1.0}
    with pytest.raises(EvaluationError, match="no output 'nope'"):
        compute_metrics(["accuracy"], Predictions(outputs, 4), truth, "nope", ())


def test_predict_all_batches_and_unbatched_rows() -> None:
    calls: list[int] = []

    def predict(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(arrays["x"]))
        return {"y": arrays["x"].sum(axis=-1)}

    x = np.ones((10, 3))
    assert predict_all(predict, {"x": x}, 4).outputs["y"].shape == (10,)
    assert calls == [4, 4, 2]
    calls.clear()
    assert predict_all(predict, {"x": x}, 0).outputs["y"].shape == (10,)
    assert calls == [3] * 10  # one row, no batch dimension
    latency = measure_latency(predict, {"x": x}, batched=True)
    assert set(latency) == {
        "mean_latency_ms",
        "p50_latency_ms",
        "p90_latency_ms",
        "p95_latency_ms",
        "p99_latency_ms",
    }
    assert 0 <= latency["p50_latency_ms"] <= latency["p99_latency_ms"]
