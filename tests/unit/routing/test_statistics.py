"""The canary statistics (routing/statistics.py): published interval values, the alpha spent
over repeated looks, the verdicts of the issue's scenarios, and a simulation of the false-alarm
rate of two equal arms over four looks."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import orjson
import pytest

from modelserve.routing.statistics import (
    OVERRUN_SHARE,
    ArmSample,
    Checks,
    judge,
    look_alpha,
    newcombe_difference,
    wilson_interval,
)

ISSUE_CHECKS = Checks(
    max_error_rate=0.01,
    max_p99_ms=500,
    max_error_rate_increase=0.005,
    max_latency_increase=0.2,
    max_accuracy_drop=0.01,
    min_labels=200,
)


def durations(rng: np.random.Generator, n: int, median_ms: float = 20.0) -> list[float]:
    return list(rng.lognormal(math.log(median_ms), 0.25, n))


# ---- intervals: Newcombe's worked examples -----------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "n", "expected"),
    [
        # Newcombe (1998), "Two-sided confidence intervals for the single proportion", table I,
        # method 3 (Wilson score, no continuity correction).
        (81, 263, (0.2553, 0.3662)),
        (15, 148, (0.0624, 0.1605)),
        (0, 20, (0.0, 0.1611)),
        (1, 29, (0.0061, 0.1718)),
    ],
)
def test_wilson_matches_newcombes_table(
    successes: int, n: int, expected: tuple[float, float]
) -> None:
    lower, upper = wilson_interval(successes, n, 0.05)
    assert (round(lower, 4), round(upper, 4)) == expected


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2", "expected"),
    [
        # Newcombe (1998), "Interval estimation for the difference between independent
        # proportions: comparison of eleven methods", table II, method 10 (hybrid score).
        (56, 70, 48, 80, (0.0524, 0.3339)),
        (9, 10, 3, 10, (0.1705, 0.8090)),
        (6, 7, 2, 7, (0.0582, 0.8062)),
        (5, 56, 0, 29, (-0.0381, 0.1926)),
        (0, 10, 0, 20, (-0.1611, 0.2775)),
        (0, 10, 0, 10, (-0.2775, 0.2775)),
        (10, 10, 0, 20, (0.6791, 1.0)),
        (10, 10, 0, 10, (0.6075, 1.0)),
    ],
)
def test_newcombe_matches_newcombes_table(
    x1: int, n1: int, x2: int, n2: int, expected: tuple[float, float]
) -> None:
    lower, upper = newcombe_difference(x1, n1, x2, n2, 0.05)
    assert (round(lower, 4), round(upper, 4)) == expected


def test_interval_edges_and_bad_arguments() -> None:
    assert wilson_interval(0, 0, 0.05) == (0.0, 1.0)
    lower, upper = wilson_interval(5, 10, 0.05)
    narrow = wilson_interval(5, 10, 0.5)
    assert lower < narrow[0] < 0.5 < narrow[1] < upper
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="alpha"):
            wilson_interval(1, 2, bad)
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(3, 2, 0.05)
    with pytest.raises(ValueError, match="at least one"):
        newcombe_difference(0, 0, 1, 2, 0.05)


# ---- alpha over repeated looks -----------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.08])
@pytest.mark.parametrize("looks", [1, 2, 4, 10])
def test_look_alpha_is_monotone_within_the_plan_and_bounded_over_any_number_of_looks(
    alpha: float, looks: int
) -> None:
    levels = [look_alpha(alpha, look, looks) for look in range(1, looks + 60)]
    assert all(level > 0 for level in levels[:looks])
    planned = levels[:looks]
    assert planned == sorted(planned), "an early look never gets more alpha than a later one"
    assert sum(planned) == pytest.approx((1 - OVERRUN_SHARE) * alpha)
    assert sum(levels) <= alpha * (1 + 1e-12)  # alpha, up to rounding


def test_look_alpha_spends_little_early() -> None:
    first, last = look_alpha(0.05, 1, 4), look_alpha(0.05, 4, 4)
    assert first < 0.001 < 0.01 < last
    assert look_alpha(0.05, 1, 1) == pytest.approx(0.05 * (1 - OVERRUN_SHARE))
    with pytest.raises(ValueError, match="at least 1"):
        look_alpha(0.05, 0, 4)


# ---- verdicts ----------------------------------------------------------------------------------


def test_fewer_than_min_requests_waits() -> None:
    rng = np.random.default_rng(1)
    arm = ArmSample(199, 0, durations(rng, 199))
    full = ArmSample(400, 0, durations(rng, 400))
    verdict = judge(arm, full, ISSUE_CHECKS, min_requests=200, look=1, looks=4)
    assert verdict.verdict == "inconclusive"
    assert verdict.reason.startswith("waiting for data")
    assert verdict.figures["candidate_requests"] == 199


def test_a_candidate_failing_30_percent_rolls_back_at_the_first_look() -> None:
    rng = np.random.default_rng(2)
    candidate = ArmSample(200, 60, durations(rng, 140))
    baseline = ArmSample(200, 0, durations(rng, 200))
    verdict = judge(candidate, baseline, ISSUE_CHECKS, min_requests=200, look=1, looks=4)
    assert verdict.verdict == "rollback", verdict.reason
    assert "error rate 30.00%" in verdict.reason
    figures = verdict.figures
    assert figures["candidate_error_rate"] == 0.3
    assert isinstance(figures["error_rate_lower"], float) and figures["error_rate_lower"] > 0.15
    assert figures["alpha_look"] == look_alpha(0.05, 1, 4)
    # tested: error rate, its increase, p99, latency (accuracy has no labels yet)
    assert figures["tests"] == 4
    assert figures["alpha_check"] == pytest.approx(look_alpha(0.05, 1, 4) / 4)


def test_a_candidate_50_ms_slower_rolls_back_on_latency() -> None:
    rng = np.random.default_rng(3)
    baseline = ArmSample(200, 0, durations(rng, 200))
    candidate = ArmSample(200, 0, [d + 50.0 for d in durations(rng, 200)])
    checks = Checks(max_latency_increase=0.2)
    verdict = judge(candidate, baseline, checks, min_requests=200, look=1, looks=4)
    assert verdict.verdict == "rollback", verdict.reason
    assert verdict.reason.startswith("median latency x3.")
    assert verdict.figures["latency_p_value"] < verdict.figures["alpha_check"]  # type: ignore[operator]
    assert verdict.figures["latency_slower_share"] == 1.0


def test_a_candidate_10_percent_slower_is_within_a_20_percent_limit() -> None:
    rng = np.random.default_rng(4)
    baseline = ArmSample(2000, 0, durations(rng, 2000))
    candidate = ArmSample(2000, 0, [d * 1.1 for d in durations(rng, 2000)])
    verdict = judge(
        candidate, baseline, Checks(max_latency_increase=0.2), min_requests=200, look=4, looks=4
    )
    assert verdict.verdict == "promote", verdict.reason


def test_equal_arms_with_enough_data_promote() -> None:
    rng = np.random.default_rng(5)
    baseline = ArmSample(1000, 2, durations(rng, 998), labels=400, correct=360)
    candidate = ArmSample(1000, 2, durations(rng, 998), labels=400, correct=362)
    verdict = judge(candidate, baseline, ISSUE_CHECKS, min_requests=200, look=2, looks=4)
    assert verdict.verdict == "promote", verdict.reason
    assert verdict.figures["tests"] == 5
    for name in ("error rate", "error rate increase", "p99", "median latency", "accuracy drop"):
        assert name in verdict.reason


def test_a_breach_that_is_not_significant_holds_the_step() -> None:
    rng = np.random.default_rng(6)
    candidate = ArmSample(200, 3, durations(rng, 197))  # 1.5 % against a 1 % limit
    baseline = ArmSample(200, 0, durations(rng, 200))
    verdict = judge(
        candidate, baseline, Checks(max_error_rate=0.01), min_requests=200, look=4, looks=4
    )
    assert verdict.verdict == "inconclusive"
    assert verdict.reason.startswith("holding")
    assert verdict.figures["error_rate_lower"] < 0.01  # type: ignore[operator]


def test_accuracy_waits_for_labels_only_at_the_last_step() -> None:
    rng = np.random.default_rng(7)
    baseline = ArmSample(300, 0, durations(rng, 300), labels=50, correct=45)
    candidate = ArmSample(300, 0, durations(rng, 300), labels=40, correct=36)
    checks = Checks(max_error_rate=0.01, max_accuracy_drop=0.01)
    early = judge(candidate, baseline, checks, min_requests=200, look=2, looks=4)
    assert early.verdict == "promote", early.reason
    assert "accuracy_drop" not in early.figures
    last = judge(candidate, baseline, checks, min_requests=200, look=4, looks=4)
    assert last.verdict == "inconclusive"
    assert "accuracy: candidate 40, baseline 50 of 200 labels" in last.reason
    told = judge(candidate, baseline, checks, min_requests=200, look=2, looks=4, last_step=True)
    assert told.verdict == "inconclusive"


def test_a_less_accurate_candidate_rolls_back_once_labelled() -> None:
    rng = np.random.default_rng(8)
    baseline = ArmSample(400, 0, durations(rng, 400), labels=300, correct=285)  # 95 %
    candidate = ArmSample(400, 0, durations(rng, 400), labels=300, correct=225)  # 75 %
    verdict = judge(candidate, baseline, ISSUE_CHECKS, min_requests=200, look=2, looks=4)
    assert verdict.verdict == "rollback", verdict.reason
    assert verdict.reason.startswith("accuracy drop 20.00%")
    assert verdict.figures["accuracy_drop"] == pytest.approx(0.2)


def test_p99_rolls_back_on_a_share_over_the_bound_and_passes_under_it() -> None:
    rng = np.random.default_rng(9)
    fast = durations(rng, 400)
    baseline = ArmSample(400, 0, fast)
    slow_tail = ArmSample(400, 0, fast[:380] + [900.0] * 20)  # 5 % over 500 ms
    checks = Checks(max_p99_ms=500)
    rolled = judge(slow_tail, baseline, checks, min_requests=200, look=3, looks=4)
    assert rolled.verdict == "rollback", rolled.reason
    assert rolled.figures["p99_over"] == 20
    good = ArmSample(400, 0, [*fast[:399], 900.0])  # 0.25 % over
    assert judge(good, baseline, checks, min_requests=200, look=3, looks=4).verdict == "promote"


def test_confident_promotion_needs_more_requests_than_200() -> None:
    rng = np.random.default_rng(10)
    checks = Checks(max_error_rate=0.01)
    small = ArmSample(200, 0, durations(rng, 200))
    verdict = judge(small, small, checks, min_requests=200, look=4, looks=4, promote="confident")
    assert verdict.verdict == "inconclusive"
    assert verdict.reason.startswith("holding, not shown within the limit")
    assert verdict.figures["error_rate_upper"] > 0.01  # type: ignore[operator]
    large = ArmSample(400, 0, durations(rng, 400))
    confident = judge(large, large, checks, min_requests=200, look=4, looks=4, promote="confident")
    assert confident.verdict == "promote", confident.reason


def test_latency_checks_wait_for_enough_durations() -> None:
    candidate = ArmSample(200, 180, [10.0] * 20)
    baseline = ArmSample(200, 0, [10.0] * 200)
    verdict = judge(candidate, baseline, Checks(max_p99_ms=500), min_requests=200, look=1, looks=4)
    assert verdict.verdict == "inconclusive"
    assert verdict.reason == "waiting for data: p99: 20 durations sampled"


def test_durations_of_zero_do_not_break_the_latency_test() -> None:
    zero = ArmSample(200, 0, [0.0] * 200)
    verdict = judge(zero, zero, Checks(max_latency_increase=0.2), min_requests=200, look=4, looks=4)
    assert verdict.verdict == "promote", verdict.reason
    assert verdict.figures["latency_median_ratio"] is None
    assert verdict.reason.startswith("latency vs limit x1.20")


def test_no_checks_promote_once_the_arms_have_their_requests() -> None:
    arm = ArmSample(200, 0, [])
    verdict = judge(arm, arm, Checks(), min_requests=200, look=1, looks=4)
    assert verdict.verdict == "promote"


def test_figures_are_plain_json_numbers() -> None:
    rng = np.random.default_rng(11)
    candidate = ArmSample(500, 10, durations(rng, 490), labels=250, correct=200)
    baseline = ArmSample(500, 1, durations(rng, 499), labels=250, correct=240)
    verdict = judge(candidate, baseline, ISSUE_CHECKS, min_requests=200, look=3, looks=4)
    for name, value in verdict.figures.items():
        assert value is None or (isinstance(value, int | float) and math.isfinite(value)), name
    assert orjson.loads(orjson.dumps(verdict.figures)) == verdict.figures


def test_bad_samples_are_refused() -> None:
    with pytest.raises(ValueError, match="errors"):
        ArmSample(1, 2, [])
    with pytest.raises(ValueError, match="correct"):
        ArmSample(1, 0, [], labels=1, correct=2)
    with pytest.raises(ValueError, match="max_error_rate"):
        Checks(max_error_rate=1.5)


# ---- the false-alarm rate over repeated looks --------------------------------------------------


def test_equal_arms_roll_back_at_most_alpha_of_the_time_over_four_looks() -> None:
    """Two arms that behave the same, every check's limit at the arms' true value (the
    hardest case: each test's null hypothesis holds with equality), four looks on fresh data
    per step: the share of experiments rolled back at some look stays within alpha."""
    rng = np.random.default_rng(20261126)
    alpha, looks, n, runs = 0.05, 4, 300, 400
    true_p99 = 20.0 * math.exp(0.25 * 2.3263)  # the lognormal's 99th percentile
    checks = Checks(
        max_error_rate=0.02,
        max_error_rate_increase=0.0,
        max_p99_ms=true_p99,
        max_latency_increase=0.0,
        max_accuracy_drop=0.0,
        min_labels=100,
    )

    def arm() -> ArmSample:
        errors = int(rng.binomial(n, 0.02))
        labels = 150
        return ArmSample(
            n,
            errors,
            durations(rng, n - errors),
            labels=labels,
            correct=int(rng.binomial(labels, 0.9)),
        )

    alarms = 0
    for _ in range(runs):
        for look in range(1, looks + 1):
            verdict = judge(arm(), arm(), checks, min_requests=200, look=look, looks=looks)
            if verdict.verdict == "rollback":
                alarms += 1
                break
    assert alarms / runs <= alpha + 0.02


def test_importing_the_module_does_not_import_scipy() -> None:
    code = (
        "import sys, modelserve.routing.statistics as s\n"
        "s.judge(s.ArmSample(9, 1, []), s.ArmSample(9, 0, []), s.Checks(max_error_rate=0.1),"
        " min_requests=5, look=1, looks=1)\n"
        "assert 'scipy' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
