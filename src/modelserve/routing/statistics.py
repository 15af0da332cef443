"""The statistics of a canary step: is the candidate version worse than the baseline arm?

Pure functions over per-arm counts and duration samples (``ArmSample``), so the canary's state
machine can call ``judge`` at every look and keep the ``Verdict`` (its reason and every figure it
used) in the experiment's history. docs/experiments.md ("Statistics") explains the tests in plain
words; in short:

- error rate: Wilson score intervals for one proportion, Newcombe's hybrid score interval
  (method 10 of Newcombe 1998) for the difference of two;
- p99: a one-sided binomial test of the share of sampled durations over the bound against 1 %;
- latency increase: a one-sided Mann-Whitney U test of the candidate's durations against the
  baseline's scaled by ``1 + max_latency_increase``;
- accuracy: Newcombe's interval of baseline minus candidate accuracy, once both arms have
  ``min_labels`` labels.

A rollback needs *significant* evidence: the false-alarm rate over every look of a canary is
kept under ``alpha`` by spending alpha over the planned looks (``look_alpha``: Lan-DeMets
O'Brien-Fleming-type spending, each look's share used as its own level, so the union bound holds
however the looks depend on each other) and by splitting a look's level between the checks
tested at that look (Bonferroni). scipy.stats (``modelserve[monitoring]``) is imported when a
latency or p99 check first runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "MIN_DURATIONS",
    "OVERRUN_SHARE",
    "P99_SHARE",
    "ArmSample",
    "Checks",
    "Verdict",
    "judge",
    "look_alpha",
    "newcombe_difference",
    "wilson_interval",
]

OVERRUN_SHARE = 0.1
"""The share of alpha kept for looks beyond the planned ones (a step that held longer than
planned): look ``looks + j`` gets ``OVERRUN_SHARE * alpha / 2**j``, so the total over any number
of looks stays within alpha. The planned looks share the rest."""
MIN_DURATIONS = 50
"""Sampled durations each arm needs before a latency check counts (fewer: the check waits),
or ``min_requests`` if that is smaller."""
P99_SHARE = 0.01
"""A p99 bound means at most this share of requests may take longer."""

_NORMAL = NormalDist()

Figures = dict[str, float | int | None]


@dataclass(frozen=True)
class ArmSample:
    """What one arm of the experiment did during the step being judged."""

    requests: int
    """Completed requests of this arm in the step."""
    errors: int
    """Of which failed (server-side errors, not 4xx input errors)."""
    durations_ms: Sequence[float]
    """A uniform sample of successful request durations (up to a few thousand)."""
    labels: int = 0
    """Labelled predictions in the step (monitoring store)."""
    correct: int = 0
    """Of which correct (classifiers)."""

    def __post_init__(self) -> None:
        if not 0 <= self.errors <= self.requests:
            raise ValueError(f"errors must be within 0..requests, got {self.errors}")
        if not 0 <= self.correct <= self.labels:
            raise ValueError(f"correct must be within 0..labels, got {self.correct}")


@dataclass(frozen=True)
class Checks:
    """The experiment's ``canary.checks``; ``None`` turns a check off."""

    max_error_rate: float | None = None
    max_p99_ms: float | None = None
    max_error_rate_increase: float | None = None
    max_latency_increase: float | None = None
    """Relative: 0.2 = the candidate may be 20 % slower."""
    max_accuracy_drop: float | None = None
    """Absolute: 0.01 = one point."""
    min_labels: int = 200

    def __post_init__(self) -> None:
        for name in ("max_error_rate", "max_error_rate_increase", "max_accuracy_drop"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise ValueError(f"{name} must be within 0..1, got {value}")
        for name in ("max_p99_ms", "max_latency_increase"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative, got {value}")
        if self.min_labels < 1:
            raise ValueError(f"min_labels must be at least 1, got {self.min_labels}")


@dataclass(frozen=True)
class Verdict:
    verdict: Literal["promote", "rollback", "inconclusive"]
    reason: str
    """One line a user reads in the experiment's history."""
    figures: Figures = field(default_factory=dict)
    """Every number the decision used: counts, rates, bounds, p-values, the alphas."""


# ---- intervals ---------------------------------------------------------------------------------


def _upper_z(level: float) -> float:
    """The z with P(Z > z) = level (infinite for a level of 0)."""
    if level <= 0.0:
        return math.inf
    if level >= 1.0:
        return -math.inf
    return -_NORMAL.inv_cdf(level)


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be within (0, 1), got {alpha}")


def _wilson(successes: int, n: int, z: float) -> tuple[float, float]:
    if n == 0 or not math.isfinite(z):
        return (0.0, 1.0)
    p = successes / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    scale = 1 + z2 / n
    lower = 0.0 if successes == 0 else max(0.0, (centre - spread) / scale)
    upper = 1.0 if successes == n else min(1.0, (centre + spread) / scale)
    return (lower, upper)


def wilson_interval(successes: int, n: int, alpha: float) -> tuple[float, float]:
    """The two-sided ``1 - alpha`` Wilson score interval of ``successes / n`` ((0, 1) for
    n = 0). Each bound alone is a one-sided ``1 - alpha/2`` bound."""
    _check_alpha(alpha)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be within 0..n, got {successes} of {n}")
    return _wilson(successes, n, _upper_z(alpha / 2))


def newcombe_difference(x1: int, n1: int, x2: int, n2: int, alpha: float) -> tuple[float, float]:
    """The two-sided ``1 - alpha`` interval of ``x1/n1 - x2/n2`` by Newcombe's hybrid score
    method (method 10 of Newcombe 1998), built from the two Wilson intervals."""
    _check_alpha(alpha)
    if n1 < 1 or n2 < 1:
        raise ValueError("both samples need at least one trial")
    if not (0 <= x1 <= n1 and 0 <= x2 <= n2):
        raise ValueError("successes must be within 0..n")
    return _newcombe(x1, n1, x2, n2, _upper_z(alpha / 2))


def _newcombe(x1: int, n1: int, x2: int, n2: int, z: float) -> tuple[float, float]:
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = _wilson(x1, n1, z)
    l2, u2 = _wilson(x2, n2, z)
    difference = p1 - p2
    lower = difference - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    upper = difference + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return (max(-1.0, lower), min(1.0, upper))


# ---- repeated looks ----------------------------------------------------------------------------


def _obf_spent(alpha: float, t: float) -> float:
    """Lan-DeMets O'Brien-Fleming-type spending: alpha spent by information fraction t."""
    if t <= 0.0:
        return 0.0
    return 2.0 * (1.0 - _NORMAL.cdf(_upper_z(alpha / 2) / math.sqrt(min(t, 1.0))))


def look_alpha(alpha: float, look: int, looks: int) -> float:
    """The significance level of look ``look`` (1-based) of ``looks`` planned looks, such that
    the levels of all looks, however many there are, add up to at most ``alpha``.

    The planned looks share ``(1 - OVERRUN_SHARE) * alpha`` by O'Brien-Fleming-type spending
    (look k gets what the spending function adds between (k-1)/looks and k/looks): very little
    at the first looks, most at the last, so an early look rolls back only on overwhelming
    evidence. Within the plan the levels never decrease (for alpha up to 0.08; the cumulative
    level always rises). Looks beyond the plan get ``OVERRUN_SHARE * alpha`` halved per extra
    look: a step that holds longer than planned keeps testing, but never spends more than
    alpha in all."""
    _check_alpha(alpha)
    if looks < 1 or look < 1:
        raise ValueError(f"look and looks must be at least 1, got {look} of {looks}")
    if look > looks:
        return OVERRUN_SHARE * alpha * 0.5 ** (look - looks)
    spent = _obf_spent(alpha, look / looks) - _obf_spent(alpha, (look - 1) / looks)
    return (1.0 - OVERRUN_SHARE) * alpha * spent / _obf_spent(alpha, 1.0)


# ---- the checks --------------------------------------------------------------------------------


@dataclass
class _Outcome:
    """One check at one look: ``fail`` (significant breach), ``pass``, ``hold`` (not shown to
    pass yet) or ``wait`` (its data are not there yet)."""

    name: str
    status: Literal["fail", "pass", "hold", "wait"]
    detail: str


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _durations(sample: ArmSample) -> npt.NDArray[np.float64]:
    values = np.asarray(sample.durations_ms, dtype=np.float64).ravel()
    return values[np.isfinite(values)]


def _quantile(values: npt.NDArray[np.float64], q: float) -> float | None:
    return float(np.quantile(values, q)) if len(values) else None


class _Judge:
    """One call of ``judge``: the arms, the checks and the figures being gathered."""

    def __init__(
        self,
        candidate: ArmSample,
        baseline: ArmSample,
        checks: Checks,
        min_requests: int,
        promote: Literal["estimate", "confident"],
        alpha: float,
    ) -> None:
        self.candidate, self.baseline, self.checks = candidate, baseline, checks
        self.promote, self.alpha = promote, alpha
        self.z_pass = _upper_z(alpha)
        self.cand_ms, self.base_ms = _durations(candidate), _durations(baseline)
        self.min_durations = max(1, min(MIN_DURATIONS, min_requests))
        self.figures: Figures = {}
        self.alpha_check = 0.0
        self.z_fail = math.inf

    def durations_ready(self, both: bool) -> bool:
        enough = len(self.cand_ms) >= self.min_durations
        return enough and (not both or len(self.base_ms) >= self.min_durations)

    def labels_ready(self) -> bool:
        need = self.checks.min_labels
        return self.candidate.labels >= need and self.baseline.labels >= need

    def set_level(self, alpha_look: float, tests: int) -> None:
        self.alpha_check = alpha_look / tests if tests else alpha_look
        self.z_fail = _upper_z(self.alpha_check)
        self.figures["alpha_check"] = self.alpha_check
        self.figures["tests"] = tests

    def _decide(
        self, name: str, fail: bool, confident: bool, estimate_ok: bool, what: str
    ) -> _Outcome:
        if fail:
            return _Outcome(name, "fail", what)
        passed = confident if self.promote == "confident" else estimate_ok
        return _Outcome(name, "pass" if passed else "hold", what)

    def error_rate(self, limit: float) -> _Outcome:
        c = self.candidate
        lower, _ = _wilson(c.errors, c.requests, self.z_fail)
        _, upper = _wilson(c.errors, c.requests, self.z_pass)
        rate = c.errors / c.requests
        self.figures.update(error_rate_limit=limit, error_rate_lower=lower, error_rate_upper=upper)
        what = f"error rate {_pct(rate)} vs limit {_pct(limit)} (lower bound {_pct(lower)})"
        return self._decide("error_rate", lower > limit, upper <= limit, rate <= limit, what)

    def _gap(
        self, name: str, x1: int, n1: int, x2: int, n2: int, limit: float
    ) -> tuple[float, float, float]:
        """p1 - p2, the lower bound of its Newcombe interval at the rollback level and the
        upper bound at the promotion level; all three (and ``limit``) go into the figures
        as ``<name>``, ``<name>_limit``, ``<name>_lower``, ``<name>_upper``."""
        gap = x1 / n1 - x2 / n2
        lower, _ = _newcombe(x1, n1, x2, n2, self.z_fail)
        _, upper = _newcombe(x1, n1, x2, n2, self.z_pass)
        self.figures.update(
            {name: gap, f"{name}_limit": limit, f"{name}_lower": lower, f"{name}_upper": upper}
        )
        return gap, lower, upper

    def error_rate_increase(self, limit: float) -> _Outcome:
        c, b = self.candidate, self.baseline
        increase, lower, upper = self._gap(
            "error_rate_increase", c.errors, c.requests, b.errors, b.requests, limit
        )
        what = (
            f"error rate increase {_pct(increase)} over the baseline vs limit {_pct(limit)} "
            f"(lower bound {_pct(lower)})"
        )
        return self._decide(
            "error_rate_increase", lower > limit, upper <= limit, increase <= limit, what
        )

    def p99(self, limit_ms: float) -> _Outcome:
        if not self.durations_ready(both=False):
            return _Outcome("p99", "wait", f"p99: {len(self.cand_ms)} durations sampled")
        from scipy import stats

        n = len(self.cand_ms)
        over = int(np.count_nonzero(self.cand_ms > limit_ms))
        p_fail = float(stats.binom.sf(over - 1, n, P99_SHARE))  # P(X >= over) at 1 %
        p_pass = float(stats.binom.cdf(over, n, P99_SHARE))  # P(X <= over) at 1 %
        self.figures.update(
            p99_limit_ms=limit_ms,
            p99_over=over,
            p99_over_share=over / n,
            p99_p_value=p_fail,
            p99_pass_p_value=p_pass,
        )
        p99 = float(np.quantile(self.cand_ms, 0.99))
        what = (
            f"p99 {p99:.1f} ms vs limit {limit_ms:g} ms ({over} of {n} sampled durations over, "
            f"p = {p_fail:.2g})"
        )
        return self._decide(
            "p99", p_fail < self.alpha_check, p_pass < self.alpha, over / n <= P99_SHARE, what
        )

    def latency_increase(self, limit: float) -> _Outcome:
        if not self.durations_ready(both=True):
            return _Outcome(
                "latency_increase",
                "wait",
                f"latency: {len(self.cand_ms)} and {len(self.base_ms)} durations sampled",
            )
        from scipy import stats

        scaled = self.base_ms * (1.0 + limit)
        greater = stats.mannwhitneyu(self.cand_ms, scaled, alternative="greater")
        slower = float(greater.statistic) / (len(self.cand_ms) * len(scaled))
        # The pass test only where it decides (confident promotion): it costs another U test.
        p_pass = math.nan
        if self.promote == "confident":
            p_pass = float(stats.mannwhitneyu(self.cand_ms, scaled, alternative="less").pvalue)
        base_median = float(np.median(self.base_ms))
        ratio = float(np.median(self.cand_ms)) / base_median if base_median > 0 else None
        self.figures.update(
            latency_increase_limit=limit,
            latency_median_ratio=ratio,
            latency_slower_share=slower,
            latency_p_value=float(greater.pvalue),
            latency_pass_p_value=p_pass if math.isfinite(p_pass) else None,
        )
        observed = f"median latency x{ratio:.2f} the baseline's" if ratio is not None else "latency"
        what = (
            f"{observed} vs limit x{1 + limit:.2f} "
            f"(P(slower than baseline x{1 + limit:.2f}) = {slower:.2f}, "
            f"p = {float(greater.pvalue):.2g})"
        )
        return self._decide(
            "latency_increase",
            float(greater.pvalue) < self.alpha_check,
            p_pass < self.alpha,
            slower <= 0.5,
            what,
        )

    def accuracy_drop(self, limit: float) -> _Outcome:
        c, b = self.candidate, self.baseline
        drop, lower, upper = self._gap(
            "accuracy_drop", b.correct, b.labels, c.correct, c.labels, limit
        )
        what = f"accuracy drop {_pct(drop)} vs limit {_pct(limit)} (lower bound {_pct(lower)})"
        return self._decide("accuracy_drop", lower > limit, upper <= limit, drop <= limit, what)


def _arm_figures(prefix: str, sample: ArmSample, durations: npt.NDArray[np.float64]) -> Figures:
    return {
        f"{prefix}_requests": sample.requests,
        f"{prefix}_errors": sample.errors,
        f"{prefix}_error_rate": sample.errors / sample.requests if sample.requests else None,
        f"{prefix}_durations": len(durations),
        f"{prefix}_p50_ms": _quantile(durations, 0.5),
        f"{prefix}_p99_ms": _quantile(durations, 0.99),
        f"{prefix}_labels": sample.labels,
        f"{prefix}_correct": sample.correct,
        f"{prefix}_accuracy": sample.correct / sample.labels if sample.labels else None,
    }


def judge(
    candidate: ArmSample,
    baseline: ArmSample,
    checks: Checks,
    *,
    min_requests: int,
    look: int,
    looks: int,
    alpha: float = 0.05,
    last_step: bool | None = None,
    promote: Literal["estimate", "confident"] = "estimate",
) -> Verdict:
    """The verdict of one look at a canary step.

    - ``inconclusive`` while either arm has fewer than ``min_requests`` requests;
    - ``rollback`` when an enabled check is breached significantly: its one-sided test rejects
      "the candidate is within the limit" at ``look_alpha(alpha, look, looks)`` divided by the
      number of checks tested at this look;
    - ``promote`` when no check is breached and every enabled check has its data and passes:
      with ``promote="estimate"`` (the default) its observed figure is within the limit; with
      ``promote="confident"`` its one-sided ``1 - alpha`` bound is (which needs far more
      requests than the usual ``min_requests`` of 200: docs/experiments.md);
    - ``inconclusive`` otherwise (hold the step and look again with more data).

    Accuracy is tested once both arms have ``checks.min_labels`` labels. Without them it is left
    out of the decision, except at the last step (``last_step``, by default ``look >= looks``)
    with ``max_accuracy_drop`` set: then the step holds until the labels are there.
    """
    _check_alpha(alpha)
    alpha_look = look_alpha(alpha, look, looks)
    work = _Judge(candidate, baseline, checks, min_requests, promote, alpha)
    figures = work.figures
    figures.update(look=look, looks=looks, alpha=alpha, alpha_look=alpha_look)
    figures["min_requests"] = min_requests
    figures.update(_arm_figures("candidate", candidate, work.cand_ms))
    figures.update(_arm_figures("baseline", baseline, work.base_ms))
    need = max(1, min_requests)
    if candidate.requests < need or baseline.requests < need:
        reason = (
            f"waiting for data: candidate {candidate.requests}, baseline {baseline.requests} "
            f"of {need} requests per arm"
        )
        return Verdict("inconclusive", reason, figures)

    planned: list[tuple[Callable[[], _Outcome], bool]] = []
    if checks.max_error_rate is not None:
        limit = checks.max_error_rate
        planned.append((lambda: work.error_rate(limit), True))
    if checks.max_error_rate_increase is not None:
        increase = checks.max_error_rate_increase
        planned.append((lambda: work.error_rate_increase(increase), True))
    if checks.max_p99_ms is not None:
        p99 = checks.max_p99_ms
        planned.append((lambda: work.p99(p99), work.durations_ready(both=False)))
    if checks.max_latency_increase is not None:
        slower = checks.max_latency_increase
        planned.append((lambda: work.latency_increase(slower), work.durations_ready(both=True)))
    waiting: list[_Outcome] = []
    if checks.max_accuracy_drop is not None:
        drop = checks.max_accuracy_drop
        figures["min_labels"] = checks.min_labels
        if work.labels_ready():
            planned.append((lambda: work.accuracy_drop(drop), True))
        elif last_step if last_step is not None else look >= looks:
            waiting.append(
                _Outcome(
                    "accuracy_drop",
                    "wait",
                    f"accuracy: candidate {candidate.labels}, baseline {baseline.labels} of "
                    f"{checks.min_labels} labels",
                )
            )
    work.set_level(alpha_look, sum(1 for _, tested in planned if tested))
    outcomes = [run() for run, _ in planned] + waiting
    return _verdict(outcomes, figures, work.alpha_check, promote)


def _verdict(
    outcomes: list[_Outcome], figures: Figures, alpha_check: float, promote: str
) -> Verdict:
    failed = [o for o in outcomes if o.status == "fail"]
    if failed:
        details = "; ".join(o.detail for o in failed)
        return Verdict("rollback", f"{details}, significant at alpha {alpha_check:.2g}", figures)
    waiting = [o for o in outcomes if o.status == "wait"]
    if waiting:
        details = "; ".join(o.detail for o in waiting)
        return Verdict("inconclusive", f"waiting for data: {details}", figures)
    holding = [o for o in outcomes if o.status == "hold"]
    if holding:
        details = "; ".join(o.detail for o in holding)
        how = "not shown within the limit" if promote == "confident" else "over the limit"
        return Verdict("inconclusive", f"holding, {how} but not significantly: {details}", figures)
    if not outcomes:
        requests = figures["candidate_requests"]
        return Verdict("promote", f"no checks enabled; {requests} candidate requests", figures)
    return Verdict("promote", "; ".join(o.detail for o in outcomes), figures)
