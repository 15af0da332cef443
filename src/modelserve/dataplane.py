"""The transport-neutral use cases both REST and gRPC call: health, metadata, config, infer,
repository index. Nothing here knows about HTTP or gRPC."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from modelserve.errors import InvalidArgument, Unavailable
from modelserve.model import LoadedModel
from modelserve.repository import ModelRepository
from modelserve.runtimes.base import Arrays
from modelserve.types import (
    IndexEntry,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
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
        executor: ThreadPoolExecutor,
        server_name: str = "modelserve",
        server_version: str = "0.0.0",
    ) -> None:
        self._repository = repository
        self._executor = executor
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
        loop = asyncio.get_running_loop()
        async with model.instances:
            produced = await loop.run_in_executor(self._executor, _run, model, arrays)
        return InferenceResponse(
            model_name=model.name,
            model_version=model.version,
            outputs=model.build_outputs(produced, specs, batch),
            id=request.id,
        )


def _run(model: LoadedModel, arrays: Arrays) -> Arrays:
    try:
        return model.runtime.predict(arrays)
    except ValueError as exc:
        # Frameworks raise ValueError for input they cannot take (NaN, wrong values): a client
        # mistake, not a server fault.
        raise InvalidArgument(f"model '{model.name}' rejected the input: {exc}") from exc
