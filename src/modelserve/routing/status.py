"""What the experiments API shows of an experiment, from the store: every process's tallies
of the current step added up, accuracy from the monitoring store's labels, the GET answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from modelserve.monitoring.store import Store
from modelserve.routing.experiments import ARMS, ArmTally, ExperimentState, percentile

__all__ = ["accuracy", "status_document", "step_tallies", "time_iso", "with_time_iso"]


def time_iso(seconds: float) -> str:
    """Epoch seconds as UTC RFC 3339 to the millisecond: ``2026-11-26T07:33:17.123Z``."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def with_time_iso(entry: dict[str, Any]) -> dict[str, Any]:
    """A history entry with ``time_iso`` beside its ``time`` (epoch seconds, kept as stored)."""
    when = entry.get("time")
    if not isinstance(when, int | float):
        return dict(entry)
    return {**entry, "time_iso": time_iso(when)}


def status_document(store: Store, state: ExperimentState, worker: str) -> dict[str, Any]:
    """The GET answer for ``state``; ``worker``: the process answering."""
    arms: dict[str, Any] = {}
    tallies = step_tallies(store, state)
    for version in state.weights:
        tally = tallies.get(version, ArmTally())
        p99 = percentile(tally.durations_ms, 0.99)
        arms[version] = {
            "arm": state.arms.get(version, version),
            "requests": tally.requests,
            "errors": tally.errors,
            "p99_ms": None if p99 is None else round(p99, 3),
            "accuracy": accuracy(store, state, version)[2],
        }
    return {
        "model": state.model,
        "id": state.id,
        "origin": state.origin,
        "state": state.state,
        "weights": dict(state.weights),
        "step": state.step,
        "baseline": state.baseline,
        "candidate": state.candidate,
        "started": state.started,
        "step_started": state.step_started,
        "spec": state.spec,
        "history": [with_time_iso(entry) for entry in state.history],
        "arms": arms,
        "process": {"worker": worker, "revision": state.revision},
    }


def step_tallies(store: Store, state: ExperimentState) -> dict[str, ArmTally]:
    """Every process's stored tallies of the current step, added up per version."""
    prefix = f"{state.model}/{state.id}/{state.step or 0}/"
    found: dict[str, list[dict[str, Any]]] = {}
    for key, value in store.states(ARMS).items():
        if key.startswith(prefix):
            version = key[len(prefix) :].split("/", 1)[0]
            found.setdefault(version, []).append(orjson.loads(value))
    return {version: ArmTally.merged(docs) for version, docs in found.items()}


def accuracy(store: Store, state: ExperimentState, version: str) -> tuple[int, int, float | None]:
    """(labelled, correct, accuracy) of ``version``'s predictions since the step began,
    from the monitoring store (0, 0, None when the model is not monitored)."""
    since = int(state.step_started * 1e9)
    pairs = store.confusion(state.model, version, since).pairs
    labelled = sum(pairs.values())
    correct = sum(n for (prediction, label), n in pairs.items() if prediction == label)
    return labelled, correct, (round(correct / labelled, 6) if labelled else None)
