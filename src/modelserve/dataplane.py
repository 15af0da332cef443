"""The transport-neutral use cases both REST and gRPC call: health, metadata, config, infer,
repository index. Nothing here knows about HTTP or gRPC."""

from __future__ import annotations

import time
from typing import Any

from modelserve.errors import InvalidArgument, Unavailable
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
        server_name: str = "modelserve",
        server_version: str = "0.0.0",
    ) -> None:
        self._repository = repository
        self._metadata = ServerMetadata(server_name, server_version, EXTENSIONS)
        self._ready = False

    # ---- server ------------------------------------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self._ready

    def set_ready(self, ready: bool) -> None:
        self._ready = ready

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

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        if not self._ready:
            raise Unavailable("the server is not ready")
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
