"""Traffic experiments as configured: the ``experiment:`` key of model.yaml (or the body of
``PUT /v2/models/{model}/experiment``), validated by pydantic. docs/experiments.md documents
every key, its default and why; routing/experiments.py and routing/canary.py run it.

```yaml
experiment:
  candidates: [{version: "1", weight: 90}, {version: "2", weight: 10}]   # weights sum to 100
  sticky: {header: x-user-id}          # or {parameter: user_id}; absent = per request
  mirror: {version: "3", percent: 100} # shadow copy: its answer is never returned
  canary:
    version: "2"                       # candidate; the other arm is the current default
    steps: [5, 25, 50, 100]            # candidate weight at each step
    step_interval_s: 60
    min_requests: 200                  # per arm per step before any verdict
    checks: {max_error_rate: 0.01, max_p99_ms: 500, max_error_rate_increase: 0.005,
             max_latency_increase: 0.2, max_accuracy_drop: 0.01, min_labels: 200}
    on_fail: rollback                  # rollback | pause
    dry_run: false
```
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "Canary",
    "CanaryChecks",
    "Candidate",
    "ExperimentConfig",
    "Mirror",
    "Sticky",
    "parse_experiment",
]

VERSION = r"^[1-9][0-9]*$"


class Candidate(BaseModel):
    """One arm of a split: a version and its share of the traffic, in percent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(pattern=VERSION, description="A version of the model.")
    weight: float = Field(
        ge=0, le=100, description="Percent of the requests (basis-point precision: 0.01)."
    )


class Sticky(BaseModel):
    """What keeps a user on one arm: a request header or a request parameter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    header: str | None = Field(
        default=None, min_length=1, description="A request header (HTTP) or metadata key (gRPC)."
    )
    parameter: str | None = Field(
        default=None, min_length=1, description="A parameter of the inference request."
    )

    @model_validator(mode="after")
    def _one(self) -> Sticky:
        if (self.header is None) == (self.parameter is None):
            raise ValueError("sticky takes exactly one of 'header' or 'parameter'")
        return self


class Mirror(BaseModel):
    """A shadow copy of the traffic to another version, after the answer; never returned."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(pattern=VERSION, description="The shadow version.")
    percent: float = Field(
        default=100.0, gt=0, le=100, description="Percent of the answered requests copied."
    )


class CanaryChecks(BaseModel):
    """What the candidate must not do worse than (null: the check is off)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_error_rate: float | None = Field(
        default=None, ge=0, le=1, description="Largest error rate of the candidate."
    )
    max_p99_ms: float | None = Field(
        default=None, gt=0, description="Largest 99th percentile of the candidate's latency."
    )
    max_error_rate_increase: float | None = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Largest increase of the error rate over the baseline (absolute).",
    )
    max_latency_increase: float | None = Field(
        default=0.2,
        ge=0,
        description="Largest relative latency increase over the baseline (0.2: 20 % slower).",
    )
    max_accuracy_drop: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Largest accuracy drop below the baseline (absolute; needs 'monitoring:' "
        "and labels).",
    )
    min_labels: int = Field(
        default=200, ge=1, description="Labels per arm before accuracy is compared."
    )


class Canary(BaseModel):
    """A progressive rollout of ``version`` against the current default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(pattern=VERSION, description="The candidate version.")
    steps: list[float] = Field(
        default_factory=lambda: [5.0, 25.0, 50.0, 100.0],
        min_length=1,
        description="The candidate's weight (percent) at each step; increasing, ending at 100.",
    )
    step_interval_s: float = Field(
        default=60.0, gt=0, le=7 * 86400, description="Least time a step lasts."
    )
    min_requests: int = Field(
        default=200, ge=1, description="Requests per arm in a step before any verdict."
    )
    checks: CanaryChecks = Field(default_factory=CanaryChecks)
    alpha: float = Field(
        default=0.05,
        gt=0,
        lt=0.5,
        description="False-alarm rate over all the planned looks (spent over the steps).",
    )
    on_fail: Literal["rollback", "pause"] = Field(
        default="rollback",
        description="rollback: the candidate's weight goes to 0. pause: weights stay where "
        "they are and the clock stops until promote or rollback.",
    )
    dry_run: bool = Field(
        default=False,
        description="Decide and record verdicts, but never move the weights.",
    )

    @model_validator(mode="after")
    def _steps(self) -> Canary:
        steps = self.steps
        if any(not 0 < s <= 100 for s in steps):
            raise ValueError("canary steps are percentages in (0, 100]")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError("canary steps must increase")
        if steps[-1] != 100:
            raise ValueError("the last canary step must be 100")
        return self


class ExperimentConfig(BaseModel):
    """A model's traffic experiment: a fixed split, a canary, a mirror, or a mirror beside
    either."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    candidates: list[Candidate] | None = Field(
        default=None, min_length=1, description="A fixed split; the weights sum to 100."
    )
    sticky: Sticky | None = Field(
        default=None, description="Keep a user on one arm. Left out: each request is drawn."
    )
    mirror: Mirror | None = Field(default=None, description="Shadow traffic to a version.")
    canary: Canary | None = Field(default=None, description="A progressive rollout.")

    @model_validator(mode="after")
    def _shape(self) -> ExperimentConfig:
        if self.candidates is None and self.canary is None and self.mirror is None:
            raise ValueError("an experiment needs 'candidates', 'canary' or 'mirror'")
        if self.candidates is not None and self.canary is not None:
            raise ValueError("'candidates' (a fixed split) and 'canary' exclude each other")
        if self.candidates is not None:
            versions = [c.version for c in self.candidates]
            if len(set(versions)) != len(versions):
                raise ValueError("each version appears once in 'candidates'")
            total = sum(round(c.weight * 100) for c in self.candidates)
            if total != 10_000:
                given = sum(c.weight for c in self.candidates)
                raise ValueError(f"candidate weights must sum to 100, got {given:g}")
        if self.mirror is not None:
            arms = {c.version for c in self.candidates or ()}
            if self.canary is not None:
                arms.add(self.canary.version)
            if self.mirror.version in arms:
                raise ValueError(f"mirror version {self.mirror.version} also takes live traffic")
        return self

    def versions(self) -> set[str]:
        """Every version the experiment names."""
        named = {c.version for c in self.candidates or ()}
        if self.canary is not None:
            named.add(self.canary.version)
        if self.mirror is not None:
            named.add(self.mirror.version)
        return named


def parse_experiment(document: Any) -> ExperimentConfig:
    """An experiment from a JSON/YAML document; ValueError with one line per problem."""
    try:
        return ExperimentConfig.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'experiment'}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(f"invalid experiment: {problems}") from None
