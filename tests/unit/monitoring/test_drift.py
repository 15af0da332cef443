"""Drift tests against a reference profile: methods by reference size, calibrated and fixed
thresholds, the drift share, PSI and the schema checks."""

from __future__ import annotations

import numpy as np

from modelserve.monitoring.drift import DriftTester
from modelserve.monitoring.profile import Profile, profile_feature


def _profile(columns: dict[str, list[object]]) -> Profile:
    rows = len(next(iter(columns.values())))
    return Profile(rows, tuple(profile_feature(n, v) for n, v in columns.items()), {})


def _reference(rows: int, seed: int = 0) -> dict[str, list[object]]:
    rng = np.random.default_rng(seed)
    return {
        "a": rng.normal(0, 1, rows).tolist(),
        "b": rng.normal(5, 2, rows).tolist(),
        "color": rng.choice(["red", "green", "blue"], rows, p=[0.5, 0.3, 0.2]).tolist(),
    }


def _window(rows: int, seed: int, shift_b: float = 0.0, colors: object = None) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    palette = ["red", "green", "blue"]
    p = [0.5, 0.3, 0.2] if colors is None else colors
    return [
        rng.normal(0, 1, rows),
        rng.normal(5 + shift_b, 2, rows),
        np.asarray(rng.choice(palette, rows, p=p), dtype=object),
    ]


def test_small_reference_uses_ks_and_chi2_and_calibrated_thresholds_hold() -> None:
    tester = DriftTester(_profile(_reference(800)), ["a", "b", "color"], None, 0.5)
    false_alarms = 0
    for seed in range(1, 21):
        result = tester.test(_window(500, seed))
        assert {f.method for f in result.features.values()} == {"ks", "chi2"}
        false_alarms += sum(f.drifted for f in result.features.values())
        assert not result.drifted
    assert false_alarms <= 2  # 60 tests of samples from the reference's own distribution
    shifted = tester.test(_window(500, 99, shift_b=1.5))
    assert [n for n, f in shifted.features.items() if f.drifted] == ["b"]
    assert not shifted.drifted  # one feature of three is under the 0.5 share
    assert shifted.features["b"].psi > 0.2 > shifted.features["a"].psi


def test_large_reference_uses_wasserstein_and_jensen_shannon() -> None:
    tester = DriftTester(_profile(_reference(5000)), ["a", "b", "color"], None, 0.5)
    result = tester.test(_window(1000, 7, shift_b=2.0, colors=[0.1, 0.1, 0.8]))
    methods = {n: f.method for n, f in result.features.items()}
    assert methods == {"a": "wasserstein", "b": "wasserstein", "color": "jensen_shannon"}
    assert not result.features["a"].drifted
    assert result.features["b"].drifted and result.features["color"].drifted
    assert result.drifted  # two of three


def test_fixed_threshold_schema_checks_and_positional_match() -> None:
    profile = _profile({"x": [0.0, 1.0, 2.0, 3.0] * 50, "kind": ["a", "b"] * 100})
    tester = DriftTester(profile, ["input[0]", "input[1]"], 0.9, 0.5)  # matched by position
    values = np.asarray([0.5, 1.5, np.nan, 9.0] * 25)
    kinds = np.asarray(["a", "b", "zzz", None] * 25, dtype=object)
    result = tester.test([values, kinds])
    numeric, categorical = result.features["input[0]"], result.features["input[1]"]
    assert numeric.threshold == 0.9 and not numeric.drifted
    assert numeric.schema == {"nan_share": 0.25, "out_of_range_share": 0.25}
    assert categorical.schema["unseen"] == 1 and categorical.schema["unseen_examples"] == ["zzz"]
    assert categorical.schema["nan_share"] == 0.25
