"""Input drift: each window of live rows, feature by feature, against the reference profile.

Methods (Evidently's rule for choosing them, by the reference's size):
- reference of at most 1,000 rows: ``ks`` (two-sample Kolmogorov-Smirnov statistic D) for
  numbers, ``chi2`` for categories (the chi-square goodness of fit against the reference's
  frequencies, as Cramér's V: sqrt(chi2 / (n (k-1))), a distance from 0 to 1);
- above: ``wasserstein`` (Wasserstein-1 distance divided by the reference's standard
  deviation) for numbers, ``jensen_shannon`` (distance, base 2, 0 to 1) for categories.
``psi`` (population stability index over the reference's deciles, or its categories) is
reported for every feature, whatever the method.

Thresholds: fixed (``threshold:``) or calibrated on the reference (NannyML's idea): the
reference is cut into ``CHUNKS`` chunks (``SPLITS`` times, shuffled), each chunk is compared
with the rest, and the threshold is the mean + 3 sigma of those distances, scaled from the
chunk's size to the window's (the sampling noise of these distances shrinks as
sqrt(1/n_window + 1/n_reference)).
A feature drifts above its threshold; the model drifts when at least ``drift_share`` of its
features do.

Schema checks per feature and window: ``nan_share`` (missing values), ``out_of_range_share``
(numbers outside the reference's min..max) and ``unseen`` (categories the reference never had).

Needs scipy (``modelserve[monitoring]``), imported when a window is first tested.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelserve.monitoring.profile import FeatureProfile, Profile

__all__ = ["CHUNKS", "DriftTester", "FeatureResult", "WindowResult"]

CHUNKS = 10
SPLITS = 5
SMALL_REFERENCE = 1000
SIGMAS = 3.0
EPS = 1e-6


@dataclass(frozen=True, slots=True)
class FeatureResult:
    method: str
    value: float
    threshold: float
    drifted: bool
    psi: float
    schema: dict[str, Any]

    def document(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "value": round(self.value, 6),
            "threshold": round(self.threshold, 6),
            "drifted": self.drifted,
            "psi": round(self.psi, 6),
            **self.schema,
        }


@dataclass(frozen=True, slots=True)
class WindowResult:
    rows: int
    drifted: bool
    features: dict[str, FeatureResult]


def _method(feature: FeatureProfile, reference_rows: int) -> str:
    small = reference_rows <= SMALL_REFERENCE
    if feature.kind == "numeric":
        return "ks" if small else "wasserstein"
    return "chi2" if small else "jensen_shannon"


def _numeric_distance(method: str, reference: np.ndarray, current: np.ndarray, std: float) -> float:
    from scipy import stats

    if len(current) == 0 or len(reference) == 0:
        return 0.0
    if method == "ks":
        return float(stats.ks_2samp(reference, current).statistic)
    scale = std if std > 0 else 1.0
    return float(stats.wasserstein_distance(reference, current)) / scale


def _shares(counts: dict[str, int], categories: Sequence[str]) -> np.ndarray:
    total = sum(counts.values()) or 1
    return np.asarray([counts.get(c, 0) / total for c in categories], dtype=np.float64)


def _categorical_distance(
    method: str, frequencies: dict[str, float], counts: dict[str, int]
) -> float:
    from scipy.spatial import distance

    n = sum(counts.values())
    if n == 0:
        return 0.0
    categories = sorted(set(frequencies) | set(counts))
    expected = np.asarray([frequencies.get(c, 0.0) for c in categories]) + EPS
    expected /= expected.sum()
    observed = _shares(counts, categories)
    if method == "jensen_shannon":
        return float(distance.jensenshannon(expected, observed, base=2))
    chi2 = float(np.sum((observed - expected) ** 2 / expected)) * n
    k = max(len(categories) - 1, 1)
    return min(math.sqrt(chi2 / (n * k)), 1.0)


def _psi_numeric(edges: Sequence[float], reference: np.ndarray, current: np.ndarray) -> float:
    if len(current) == 0 or not edges:
        return 0.0
    bins = np.asarray(edges)
    expected = np.bincount(np.searchsorted(bins, reference, side="right"), minlength=len(bins) + 1)
    actual = np.bincount(np.searchsorted(bins, current, side="right"), minlength=len(bins) + 1)
    return _psi(expected / expected.sum(), actual / actual.sum())


def _psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.clip(expected, 1e-4, None)
    a = np.clip(actual, 1e-4, None)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass
class _Feature:
    profile: FeatureProfile
    method: str
    calibration: tuple[float, float, float] | None = None
    """Mean, sigma and variance factor of the chunk-to-rest distances (None: not yet)."""
    reference_counts: dict[str, int] = field(default_factory=dict)


class DriftTester:
    """Tests windows of one model version against its reference ``profile``. ``columns``
    are the live features' names, in the order of the rows given to ``test``; they are
    matched to the profile's by name, else by position."""

    def __init__(
        self,
        profile: Profile,
        columns: Sequence[str],
        threshold: float | None,
        drift_share: float,
    ) -> None:
        self.profile = profile
        self.columns = list(columns)
        self.threshold = threshold
        self.drift_share = drift_share
        by_name = {f.name: f for f in profile.features}
        if all(c in by_name for c in columns):
            matched = [by_name[c] for c in columns]
        elif len(profile.features) >= len(columns):
            matched = list(profile.features[: len(columns)])
        else:
            raise ValueError(
                f"the reference has {len(profile.features)} columns for {len(columns)} features"
            )
        self._features = [_Feature(p, _method(p, profile.rows)) for p in matched]

    def _calibrate(self, feature: _Feature) -> tuple[float, float, float]:
        """Chunk-to-rest distances of the reference (``CHUNKS`` chunks, ``SPLITS`` random
        splits): their mean and sigma, and the sampling variance factor of one comparison
        (1/chunk + 1/rest) that they were measured at."""
        if feature.calibration is not None:
            return feature.calibration
        profile = feature.profile
        distances: list[float] = []
        rng = np.random.default_rng(0)
        if profile.kind == "numeric":
            values = profile.values
            size = max(len(values) // CHUNKS, 1)
            rest_size: float = max(len(values) - size, 1)
            for _ in range(SPLITS):
                shuffled = values[rng.permutation(len(values))]
                for i in range(CHUNKS):
                    chunk = shuffled[i * size : (i + 1) * size]
                    rest = np.concatenate([shuffled[: i * size], shuffled[(i + 1) * size :]])
                    if len(chunk) and len(rest):
                        distances.append(
                            _numeric_distance(feature.method, rest, chunk, profile.std or 1.0)
                        )
        else:
            # chunk-sized draws from the reference's frequencies (compared with the very
            # frequencies they were drawn from: no noise on the reference's side)
            frequencies = profile.frequencies or {}
            size = max(self.profile.rows // CHUNKS, 1)
            rest_size = math.inf
            categories = sorted(frequencies)
            probabilities = np.asarray([frequencies[c] for c in categories])
            for _ in range(SPLITS * CHUNKS):
                draws = rng.multinomial(size, probabilities / probabilities.sum())
                counts = {c: int(n) for c, n in zip(categories, draws, strict=True)}
                distances.append(_categorical_distance(feature.method, frequencies, counts))
        array = np.asarray(distances) if distances else np.zeros(1)
        feature.calibration = (float(array.mean()), float(array.std()), 1 / size + 1 / rest_size)
        return feature.calibration

    def _threshold(self, feature: _Feature, window_rows: int) -> float:
        if self.threshold is not None:
            return self.threshold
        mean, sigma, variance = self._calibrate(feature)
        window = 1 / max(window_rows, 1) + 1 / max(self.profile.rows, 1)
        return (mean + SIGMAS * sigma) * math.sqrt(window / variance)

    def test(self, columns: Sequence[np.ndarray]) -> WindowResult:
        """Test one window: ``columns[j]`` holds the window's values of feature j (float
        arrays with NaN for missing values, or object arrays of categories)."""
        results: dict[str, FeatureResult] = {}
        rows = len(columns[0]) if columns else 0
        for name, feature, column in zip(self.columns, self._features, columns, strict=True):
            results[name] = self._test_feature(feature, column)
        drifted = sum(r.drifted for r in results.values())
        share = drifted / len(results) if results else 0.0
        return WindowResult(rows, bool(results) and share >= self.drift_share, results)

    def _test_feature(self, feature: _Feature, column: np.ndarray) -> FeatureResult:
        profile = feature.profile
        n = len(column)
        if profile.kind == "numeric":
            values = (
                np.asarray(column, dtype=np.float64) if column.dtype != object else _floats(column)
            )
            missing = np.isnan(values)
            present = values[~missing]
            value = _numeric_distance(feature.method, profile.values, present, profile.std or 1.0)
            psi = _psi_numeric(profile.quantiles, profile.values, present)
            low = profile.minimum if profile.minimum is not None else -math.inf
            high = profile.maximum if profile.maximum is not None else math.inf
            outside = int(np.count_nonzero((present < low) | (present > high)))
            schema: dict[str, Any] = {
                "nan_share": round(float(missing.sum()) / n, 6) if n else 0.0,
                "out_of_range_share": round(outside / n, 6) if n else 0.0,
            }
        else:
            counts: dict[str, int] = {}
            nulls = 0
            for item in column.tolist():
                if item is None:
                    nulls += 1
                    continue
                key = item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
                counts[key] = counts.get(key, 0) + 1
            frequencies = profile.frequencies or {}
            value = _categorical_distance(feature.method, frequencies, counts)
            categories = sorted(set(frequencies) | set(counts))
            psi = _psi(np.asarray([frequencies.get(c, 0.0) for c in categories]),
                       _shares(counts, categories))  # fmt: skip
            unseen = sorted(c for c in counts if c not in frequencies)
            schema = {
                "nan_share": round(nulls / n, 6) if n else 0.0,
                "unseen": len(unseen),
                "unseen_examples": unseen[:5],
            }
        threshold = self._threshold(feature, n)
        return FeatureResult(feature.method, value, threshold, value > threshold, psi, schema)


def _floats(column: np.ndarray) -> np.ndarray:
    out = np.empty(len(column), dtype=np.float64)
    for i, item in enumerate(column.tolist()):
        try:
            out[i] = float(item) if item is not None else math.nan
        except (TypeError, ValueError):
            out[i] = math.nan
    return out
