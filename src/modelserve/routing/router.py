"""Which loaded version answers a request: the one it names, else the model's
``default_version``, else the newest READY one. Every lookup of the dataplane goes through here,
so that traffic experiments (weighted arms, sticky keys, mirrors) have one place to hook in.

The router reads the repository's records as they are at the moment of the call; it keeps no
state of its own, so a version swap on the event loop is seen by the next request at once.
"""

from __future__ import annotations

from modelserve.errors import Unavailable
from modelserve.serving.model import LoadedModel
from modelserve.serving.repository import ModelRepository

__all__ = ["Router"]


class Router:
    def __init__(self, repository: ModelRepository) -> None:
        self._repository = repository

    def resolve(self, name: str, version: str = "") -> LoadedModel:
        """The model serving (name, version). NotFound for an unknown model or version,
        Unavailable (with the reason) for one that is not READY."""
        return self._repository.serving(name, version)

    def is_ready(self, name: str, version: str = "") -> bool:
        """False for a known model without a READY version; NotFound for an unknown one."""
        try:
            self.resolve(name, version)
        except Unavailable:
            return False
        return True
