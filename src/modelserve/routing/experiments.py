"""A model's traffic experiment as data: its arms and weights, the sticky bucket of a request,
and the record kept in the store (``ExperimentState``), which every ``--workers`` process reads
and a restart finds again.

Weights are held in basis points (1/100 of a percent). A request's point on [0, 10,000) is
``hash(experiment id, key) mod 10,000`` for a sticky key, else a uniform draw; the arms cover
consecutive intervals in a fixed order (the baseline first), so moving weights from 90/10 to
80/20 moves exactly the keys in [8,000, 9,000) and no other.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import orjson

from modelserve.config.experiment import ExperimentConfig, parse_experiment

__all__ = [
    "ACTIVE",
    "ARMS",
    "BASIS",
    "ENDED",
    "HISTORY_MAX",
    "ArmTally",
    "ExperimentState",
    "Route",
    "Split",
    "State",
    "bucket",
    "percentile",
    "route_of",
]

ARMS = "experiment-arms"
"""Store namespace: ``model/experiment id/step/version/process`` -> that process's tallies."""

BASIS = 10_000
"""Points of the routing interval: weights have basis-point precision."""

State = Literal["running", "promoted", "rolled_back", "paused", "stopped"]
ACTIVE: frozenset[str] = frozenset({"running", "paused"})
"""States in which the experiment routes traffic."""
ENDED: frozenset[str] = frozenset({"promoted", "rolled_back", "stopped"})

HISTORY_MAX = 500
"""Decisions kept in the record (the oldest go first; every one is also an event)."""

DURATIONS_MAX = 2_000
"""Durations a process keeps per arm and step (a uniform reservoir sample)."""


def bucket(experiment_id: str, key: str) -> int:
    """The sticky point of ``key`` in [0, 10,000): the same for every process and restart."""
    digest = hashlib.blake2b(f"{experiment_id}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BASIS


@dataclass(frozen=True, slots=True)
class Split:
    """Arms over [0, 10,000): version i takes the points below ``bounds[i]`` and at or above
    the previous bound."""

    versions: tuple[str, ...]
    arms: tuple[str, ...]
    bounds: tuple[int, ...]

    @classmethod
    def of(cls, weights: Mapping[str, float], arms: Mapping[str, str]) -> Split:
        versions = tuple(weights)
        total = 0
        bounds = []
        for version in versions:
            total += round(weights[version] * 100)
            bounds.append(min(total, BASIS))
        if bounds:
            bounds[-1] = BASIS
        return cls(versions, tuple(arms.get(v, v) for v in versions), tuple(bounds))

    def pick(self, point: int) -> int:
        """The index of the arm at ``point``."""
        for index, bound in enumerate(self.bounds):
            if point < bound:
                return index
        return len(self.bounds) - 1

    def draw(self) -> int:
        return self.pick(random.randrange(BASIS))


@dataclass
class ExperimentState:
    """The stored record of a model's experiment (JSON in the store's state table)."""

    id: str
    model: str
    spec: dict[str, Any]
    """The experiment as configured (ExperimentConfig's JSON form)."""
    origin: Literal["config", "api"]
    state: State
    weights: dict[str, float]
    """version -> percent, in routing order (the baseline first)."""
    arms: dict[str, str]
    """version -> arm name (``baseline``/``candidate`` for a canary, ``a``, ``b``… for a split)."""
    step: int | None = None
    """The canary's step, 1-based; None for a split."""
    baseline: str | None = None
    candidate: str | None = None
    started: float = 0.0
    """Wall-clock seconds (shared by every process, unlike a monotonic clock)."""
    step_started: float = 0.0
    """When the current step began: its figures count from there."""
    next_look: float = 0.0
    """When the canary's next verdict is due (a step lasts at least ``step_interval_s``; a
    held step waits another interval)."""
    looks: int = 0
    """Verdicts taken on data in the current plan (for the alpha spent at the next one)."""
    revision: int = 0
    """Bumped by each stored change: a change is written only over the revision it read."""
    ended: float | None = None
    source: str = ""
    """For an experiment from model.yaml, a hash of its configuration: a restart that finds
    the same one stored leaves it where it was."""
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def config(self) -> ExperimentConfig:
        return parse_experiment(self.spec)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def split(self) -> Split:
        return Split.of(self.weights, self.arms)

    def record(self, time_s: float, verdict: str, reason: str, figures: dict[str, Any]) -> None:
        self.history.append(
            {"time": round(time_s, 3), "verdict": verdict, "reason": reason, "figures": figures}
        )
        del self.history[:-HISTORY_MAX]

    def dumps(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def loads(cls, text: str) -> ExperimentState:
        return cls(**orjson.loads(text))


@dataclass(slots=True)
class ArmTally:
    """One process's requests of one arm in one step: counts and a reservoir of durations."""

    requests: int = 0
    errors: int = 0
    durations_ms: list[float] = field(default_factory=list)
    seen: int = 0
    """Successful requests offered to the reservoir."""
    processes: int = 0
    """Of a merged tally: how many processes' tallies it adds up."""

    def add(self, ok: bool, duration_ms: float, server_error: bool) -> None:
        self.requests += 1
        if server_error:
            self.errors += 1
        if not ok:
            return
        self.seen += 1
        if len(self.durations_ms) < DURATIONS_MAX:
            self.durations_ms.append(duration_ms)
        else:
            slot = random.randrange(self.seen)
            if slot < DURATIONS_MAX:
                self.durations_ms[slot] = duration_ms

    def document(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "seen": self.seen,
            "durations_ms": [round(d, 3) for d in self.durations_ms],
        }

    @classmethod
    def merged(cls, documents: list[dict[str, Any]]) -> ArmTally:
        """Several processes' tallies as one; the durations subsampled in proportion to what
        each process saw, so that the merged sample stays uniform."""
        total = cls()
        seen = sum(int(d.get("seen", 0)) for d in documents)
        for doc in documents:
            total.requests += int(doc.get("requests", 0))
            total.errors += int(doc.get("errors", 0))
            durations = [float(x) for x in doc.get("durations_ms", [])]
            share = int(doc.get("seen", 0))
            if seen > DURATIONS_MAX and durations:
                keep = max(1, round(DURATIONS_MAX * share / seen))
                durations = random.sample(durations, min(keep, len(durations)))
            total.durations_ms.extend(durations)
        total.seen = seen
        total.processes = len(documents)
        return total


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) of ``values`` by the nearest-rank method; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q * len(ordered) - 1e-9)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Route:
    """A model's active experiment as the hot path uses it."""

    state: ExperimentState
    split: Split | None
    header: str | None
    parameter: str | None
    mirror: str | None
    mirror_share: float


def route_of(state: ExperimentState) -> Route:
    """What the hot path needs of an active experiment."""
    config = state.config
    split = state.split() if state.weights else None
    sticky = config.sticky
    mirror = config.mirror
    return Route(
        state,
        split,
        sticky.header.lower() if sticky is not None and sticky.header is not None else None,
        sticky.parameter if sticky is not None else None,
        mirror.version if mirror is not None else None,
        mirror.percent / 100 if mirror is not None else 0.0,
    )
