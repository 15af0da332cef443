"""Which loaded version answers a request: the one it names, else the arm a traffic experiment
draws (routing/controller.py), else the version a canary promoted, else the model's
``default_version``, else the newest READY one. Every lookup of the dataplane goes through here.

The router reads the repository's records as they are at the moment of the call; it keeps no
state of its own, so a version swap on the event loop is seen by the next request at once.
"""

from __future__ import annotations

from modelserve.errors import ErrorCode, ServerError, Unavailable
from modelserve.routing.controller import Experiments
from modelserve.serving.model import LoadedModel
from modelserve.serving.repository import ModelRepository
from modelserve.types import EMPTY_PARAMS, Parameters

__all__ = ["Router"]


class Router:
    def __init__(self, repository: ModelRepository, experiments: Experiments | None = None) -> None:
        self._repository = repository
        self.experiments = experiments

    def resolve(self, name: str, version: str = "") -> LoadedModel:
        """The model serving (name, version). NotFound for an unknown model or version,
        Unavailable (with the reason) for one that is not READY."""
        if not version and self.experiments is not None:
            version = self.experiments.default(name) or ""
        return self._repository.serving(name, version)

    def route(
        self, name: str, version: str = "", parameters: Parameters = EMPTY_PARAMS
    ) -> tuple[LoadedModel, str | None]:
        """The model answering an inference request, and the experiment arm that chose it
        (None when no experiment did: the request named a version, or none runs). An arm
        whose version is not READY (unloaded meanwhile) gives way to the default."""
        if not version and self.experiments is not None:
            choice = self.experiments.choose(name, parameters)
            if choice is not None:
                try:
                    return self._repository.serving(name, choice[0]), choice[1]
                except ServerError:
                    pass
        return self.resolve(name, version), None

    def observe(
        self, name: str, version: str, arm: str, code: ErrorCode | None, duration_ms: float
    ) -> None:
        """The outcome of a request an experiment routed."""
        if self.experiments is not None:
            self.experiments.observe(name, version, arm, code, duration_ms)

    def is_ready(self, name: str, version: str = "") -> bool:
        """False for a known model without a READY version; NotFound for an unknown one."""
        try:
            self.resolve(name, version)
        except Unavailable:
            return False
        return True
