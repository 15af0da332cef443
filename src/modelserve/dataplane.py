"""The transport-neutral use cases both REST and gRPC call: health, metadata, config, infer,
repository index. Nothing here knows about HTTP or gRPC."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from modelserve.config import parse_model_config
from modelserve.errors import FailedPrecondition, InvalidArgument, ModelLoadError, Unavailable
from modelserve.lifecycle import Lifecycle
from modelserve.repository import ModelRepository
from modelserve.types import (
    IndexEntry,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    Parameters,
    ServerMetadata,
)

EXTENSIONS: tuple[str, ...] = (
    "binary_tensor_data",
    "model_configuration",
    "model_repository",
    "parameters",
)


class DataPlane:
    def __init__(
        self,
        repository: ModelRepository,
        lifecycle: Lifecycle,
        server_name: str = "modelserve",
        server_version: str = "0.0.0",
    ) -> None:
        self._repository = repository
        self._lifecycle = lifecycle
        self._accepting = True
        self._metadata = ServerMetadata(server_name, server_version, EXTENSIONS)
        self._ready = False

    # ---- server ------------------------------------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self._ready

    def set_ready(self, ready: bool) -> None:
        self._ready = ready

    def stop_accepting(self) -> None:
        """From now on inference is refused cleanly (503 / UNAVAILABLE): the server drains."""
        self._accepting = False

    @property
    def accepting(self) -> bool:
        return self._accepting

    def server_metadata(self) -> ServerMetadata:
        return self._metadata

    # ---- models ------------------------------------------------------------------------------

    def model_ready(self, name: str, version: str = "") -> bool:
        """False for a known model without a READY version; NotFound for an unknown one."""
        return self._repository.is_ready(name, version)

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        model = self._repository.get(name, version)
        versions = (version,) if version else tuple(self._repository.ready_versions(name))
        return ModelMetadata(model.name, versions, model.platform, model.inputs, model.outputs)

    def model_config(self, name: str, version: str = "") -> dict[str, Any]:
        return self._repository.get(name, version).triton_config()

    def repository_index(self, ready_only: bool = False) -> list[IndexEntry]:
        return self._repository.index(ready_only)

    # ---- inference ---------------------------------------------------------------------------

    async def load_model(self, name: str, config_json: str | None = None) -> None:
        """The repository extension's load: (re)load a model, optionally with a config
        override (a JSON document in model.yaml's schema). Explicit model-control mode only."""
        self._check_control("load")
        override = None
        if config_json:
            try:
                document = orjson.loads(config_json)
            except orjson.JSONDecodeError as exc:
                raise InvalidArgument(f"the 'config' parameter is not valid JSON: {exc}") from None
            try:
                override = parse_model_config(document, Path(name) / "config parameter")
            except ModelLoadError as exc:
                raise InvalidArgument(str(exc)) from None
        await self._lifecycle.load_on_request(name, override)

    async def unload_model(self, name: str) -> None:
        self._check_control("unload")
        self._repository.get_entry(name)
        await self._lifecycle.unload(name)

    def _check_control(self, action: str) -> None:
        if self._lifecycle.mode != "explicit":
            raise FailedPrecondition(
                f"model {action} is not allowed in model control mode "
                f"'{self._lifecycle.mode}'; start the server with --model-control-mode explicit"
            )

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        if not self._accepting:
            raise Unavailable("the server is shutting down")
        model = self._repository.get(request.model_name, request.model_version)
        arrays = model.check_inputs(request)
        specs = model.check_requested(request.outputs)
        batch = request.inputs[0].shape[0] if model.max_batch_size > 0 else None
        deadline = _deadline(request.parameters, model.config.default_timeout_ms)
        done = await model.batcher.submit(arrays, batch or 1, deadline)
        return InferenceResponse(
            model_name=model.name,
            model_version=model.version,
            outputs=model.build_outputs(done.outputs, specs, batch),
            id=request.id,
        )


def _deadline(parameters: Parameters, default_timeout_ms: int) -> float | None:
    """A monotonic deadline from the request's ``timeout`` parameter (microseconds, as Triton)
    or the model's default."""
    timeout = parameters.get("timeout")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
            raise InvalidArgument("parameter 'timeout' must be a non-negative integer (µs)")
        if timeout > 0:
            return time.monotonic() + timeout / 1e6
    if default_timeout_ms > 0:
        return time.monotonic() + default_timeout_ms / 1e3
    return None
