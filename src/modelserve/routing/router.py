"""Which loaded version answers a request: the one it names, else the arm a traffic experiment
draws (routing/controller.py), else the version a canary promoted, else the model's
``default_version``, else the newest READY one. Every lookup of the dataplane goes through here.

The router reads the repository's records as they are at the moment of the call; it keeps no
state of its own, so a version swap on the event loop is seen by the next request at once.
"""

from __future__ import annotations

from typing import Protocol

from modelserve.errors import ErrorCode, ServerError, Unavailable
from modelserve.observability.context import current_request_id, usable_id
from modelserve.routing.controller import Experiments
from modelserve.serving.model import LoadedModel
from modelserve.serving.repository import ModelRepository
from modelserve.serving.shared_memory import REGION
from modelserve.types import EMPTY_PARAMS, InferenceRequest, InferenceResponse, Parameters

__all__ = ["Mirror", "Router"]


class Mirror(Protocol):
    """Where shadow copies go (routing/shadow.py: ``ShadowMirror``)."""

    def offer(
        self, model: str, version: str, request: InferenceRequest, primary: InferenceResponse
    ) -> bool: ...


class Router:
    def __init__(
        self,
        repository: ModelRepository,
        experiments: Experiments | None = None,
        mirror: Mirror | None = None,
    ) -> None:
        """``mirror``: where a copy of an answered request goes when the model's experiment
        mirrors (or a version failed its validation gate with ``on_fail: shadow``)."""
        self._repository = repository
        self.experiments = experiments
        self.mirror = mirror

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

    def shadow(self, request: InferenceRequest, response: InferenceResponse) -> None:
        """After an answer: a copy of the request to the model's shadow version, if it has
        one (never blocks, never raises: a full queue sheds the copy)."""
        if self.experiments is None or self.mirror is None:
            return
        version = self.experiments.mirror(request.model_name)
        if version is None or version == response.model_version:
            return
        outputs = request.outputs
        if outputs is not None and any(REGION in o.parameters for o in outputs):
            outputs = None  # the shadow's answer never goes to the client's shared memory
        copy = InferenceRequest(
            request.model_name,
            request.inputs,
            version,
            request.id if usable_id(request.id) else current_request_id(),
            request.parameters,
            outputs,
        )
        self.mirror.offer(request.model_name, version, copy, response)

    def is_ready(self, name: str, version: str = "") -> bool:
        """False for a known model without a READY version; NotFound for an unknown one."""
        try:
            self.resolve(name, version)
        except Unavailable:
            return False
        return True
