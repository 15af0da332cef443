"""The canary's clock: at the end of each step, a verdict on the step's figures
(routing/statistics.py: ``judge``), applied to the stored record.

A step lasts at least ``step_interval_s``. Its verdict is taken once that time has passed and
both arms have answered ``min_requests`` requests in the step (until then the step simply
waits: no look at the data is spent). The verdict is

- **promote**: the next step's weight; at 100 the candidate becomes the default and the
  experiment ends (``promoted``);
- **rollback**: ``on_fail: rollback`` sends every request to the baseline and ends the
  experiment (``rolled_back``); ``on_fail: pause`` keeps the weights and stops the clock
  (``paused``) until a user promotes or rolls back;
- **inconclusive**: the step holds for another interval, its figures still adding up.

With ``dry_run`` every verdict is recorded and published but the weights never move.

Each verdict is one *look* at the data. The planned looks are the steps below 100; the
false-alarm rate over all of them, and over the extra looks of held steps, is bounded by
``alpha`` (``look_alpha``: alpha spent over the looks).

Everything here runs on the experiments' store thread (routing/controller.py), which writes the
changed record only over the revision it read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelserve.config.experiment import Canary
from modelserve.monitoring.store import Store
from modelserve.routing.experiments import ArmTally, ExperimentState, percentile

if TYPE_CHECKING:
    from modelserve.routing.controller import Experiments
    from modelserve.routing.statistics import ArmSample, Verdict

__all__ = ["apply_verdict", "canary_tick", "planned_looks"]


def planned_looks(canary: Canary) -> int:
    """The verdicts a canary plans: one per step below 100 (at least one)."""
    return max(1, sum(1 for step in canary.steps if step < 100))


def canary_tick(
    experiments: Experiments, store: Store, state: ExperimentState, now: float
) -> ExperimentState | None:
    """The record after this moment of the running canary ``state``; None: nothing to do."""
    canary = state.config.canary
    if canary is None or state.candidate is None or state.baseline is None:
        return None
    if state.state != "running" or now < state.next_look:
        return None
    tallies = experiments.step_tallies(store, state)
    candidate = tallies.get(state.candidate, ArmTally())
    baseline = tallies.get(state.baseline, ArmTally())
    if min(candidate.requests, baseline.requests) < canary.min_requests:
        return None  # waiting for data: no look spent
    # imported at the first verdict: a server without a running canary never needs it
    from modelserve.routing.statistics import Checks, judge

    looks = planned_looks(canary)
    look = state.looks + 1
    samples = [
        _sample(experiments, store, state, version, tally)
        for version, tally in ((state.candidate, candidate), (state.baseline, baseline))
    ]
    checks = canary.checks
    verdict = judge(
        samples[0],
        samples[1],
        Checks(
            max_error_rate=checks.max_error_rate,
            max_p99_ms=checks.max_p99_ms,
            max_error_rate_increase=checks.max_error_rate_increase,
            max_latency_increase=checks.max_latency_increase,
            max_accuracy_drop=checks.max_accuracy_drop,
            min_labels=checks.min_labels,
        ),
        min_requests=canary.min_requests,
        look=look,
        looks=looks,
        alpha=canary.alpha,
        last_step=(state.step or 1) >= looks,
    )
    figures: dict[str, Any] = {
        **verdict.figures,
        "step": state.step,
        "weight": state.weights.get(state.candidate),
        "candidate_p99_ms": _rounded(percentile(candidate.durations_ms, 0.99)),
        "baseline_p99_ms": _rounded(percentile(baseline.durations_ms, 0.99)),
        "candidate_processes": candidate.processes,
        "baseline_processes": baseline.processes,
    }
    return apply_verdict(experiments, state, verdict, figures, now)


def apply_verdict(
    experiments: Experiments,
    state: ExperimentState,
    verdict: Verdict,
    figures: dict[str, Any],
    now: float,
) -> ExperimentState:
    """``state`` after ``verdict`` (recorded in its history with ``figures``)."""
    canary = state.config.canary
    assert canary is not None and state.candidate is not None and state.baseline is not None
    state.looks += 1
    reason = verdict.reason
    if canary.dry_run:
        reason = f"dry run: {reason}"
    state.record(now, verdict.verdict, reason, figures)
    state.next_look = now + canary.step_interval_s
    if canary.dry_run:
        return state
    if verdict.verdict == "promote":
        step = state.step or 1
        if step >= len(canary.steps) or canary.steps[step] >= 100:
            experiments.finish(state, now, promoted=True)
        else:
            weight = canary.steps[step]
            state.step = step + 1
            state.weights = {state.baseline: 100.0 - weight, state.candidate: weight}
            state.step_started = now
    elif verdict.verdict == "rollback":
        if canary.on_fail == "rollback":
            experiments.finish(state, now, promoted=False)
        else:
            state.state = "paused"
    return state


def _sample(
    experiments: Experiments, store: Store, state: ExperimentState, version: str, tally: ArmTally
) -> ArmSample:
    from modelserve.routing.statistics import ArmSample

    labels, correct, _ = experiments.accuracy(store, state, version)
    return ArmSample(
        requests=tally.requests,
        errors=tally.errors,
        durations_ms=tuple(tally.durations_ms),
        labels=labels,
        correct=correct,
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
