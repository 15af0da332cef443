"""Accuracy figures from the store's aggregates agree with scikit-learn's."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from modelserve.monitoring.accuracy import classification, regression
from modelserve.monitoring.store import Confusion, ErrorSums


def test_classification_matches_sklearn_macro() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, 300)
    predicted = np.where(rng.random(300) < 0.7, truth, rng.integers(0, 5, 300))
    pairs: dict[tuple[str, str], int] = {}
    for p, t in zip(predicted, truth, strict=True):
        pairs[(str(p), str(t))] = pairs.get((str(p), str(t)), 0) + 1
    figures = classification(Confusion(pairs))
    assert figures.labelled == 300
    assert figures.accuracy == accuracy_score(truth, predicted)
    for mine, theirs in [
        (figures.precision_macro, precision_score),
        (figures.recall_macro, recall_score),
        (figures.f1_macro, f1_score),
    ]:
        expected = theirs(truth, predicted, average="macro", zero_division=0)
        assert mine is not None and abs(mine - expected) < 1e-12


def test_empty_and_regression() -> None:
    assert classification(Confusion({})).document() == {"labelled": 0}
    figures = regression(ErrorSums(4, 2.0, 4.0))
    assert figures.mae == 0.5 and figures.rmse == 1.0
    assert figures.document() == {"labelled": 4, "mae": 0.5, "rmse": 1.0}
