"""``--server URL``: the rows go to a running server (modelserve, Triton, KServe: any V2
server) as binary requests through ``modelserve.client``, instead of loading the model here.

Everything else is the local engine's: shards, order, resume, bad rows. A 400 from the server
(or a value the client cannot cast to the input's datatype) is the batch's fault, and the
runner bisects it down to the rows to blame; anything else (the server gone after the client's
retries, a 500) fails the shard, and a rerun resumes. ``--workers`` requests are in flight at
once (one per shard being run).

The server's ``max_batch_size`` is not in the V2 metadata: a request the server refuses whose
halves it accepts teaches the predictor to send no more than the half from then on.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from modelserve.errors import InternalError, InvalidArgument
from modelserve.offline.batch.errors import BatchError
from modelserve.offline.batch.predictors import parse_model_ref
from modelserve.runtimes.base import Arrays
from modelserve.types import TensorSpec

__all__ = ["DEFAULT_IN_FLIGHT", "RemotePredictor", "connect"]

DEFAULT_IN_FLIGHT = 4
NO_LIMIT = 1 << 31


def connect(url: str, model: str, in_flight: int | None) -> RemotePredictor:
    from modelserve.client import Client, ClientError

    name, version = parse_model_ref(model)
    client = Client(url)
    try:
        meta = client.metadata(name, version)
    except ClientError as exc:
        client.close()
        raise BatchError(f"server {url}: {exc}") from None
    return RemotePredictor(client, url, name, version, meta, in_flight or DEFAULT_IN_FLIGHT)


class RemotePredictor:
    def __init__(
        self,
        client: Any,
        url: str,
        name: str,
        version: str | None,
        meta: Any,
        in_flight: int,
    ) -> None:
        self._client: Any = client
        self._url = url
        self._pinned = version
        self.name = name
        self.version = version or ""
        """The version asked for; once the server answers, the version that answered."""
        self.inputs: tuple[TensorSpec, ...] = tuple(meta.inputs)
        self.outputs: tuple[TensorSpec, ...] = tuple(meta.outputs)
        self.batched = all(s.shape and s.shape[0] == -1 for s in self.inputs + self.outputs)
        self.max_batch_size = NO_LIMIT if self.batched else 0
        self.concurrency = in_flight
        self._limit = NO_LIMIT
        self._lock = threading.Lock()

    def check(self, arrays: Arrays) -> None:
        """The metadata's names and shapes (the server checks again)."""
        specs = {s.name: s for s in self.inputs}
        for name, array in arrays.items():
            spec = specs.get(name)
            if spec is None:
                raise InvalidArgument(f"model '{self.name}' has no input '{name}'")
            shape = tuple(array.shape)
            if len(shape) != len(spec.shape) or any(
                want not in (-1, got) for want, got in zip(spec.shape, shape, strict=True)
            ):
                raise InvalidArgument(
                    f"input '{name}': shape {list(shape)} does not match the model's "
                    f"{list(spec.shape)}"
                )

    def predict(self, arrays: Arrays) -> Arrays:
        rows = len(next(iter(arrays.values())))
        limit = self._limit
        if rows > limit:
            return _join(
                [
                    self.predict(_rows(arrays, s, min(s + limit, rows)))
                    for s in range(0, rows, limit)
                ]
            )
        try:
            return self._send(arrays, rows)
        except InvalidArgument:
            if rows == 1:
                raise
            middle = rows // 2
            try:
                halves = [self._send(_rows(arrays, 0, middle), middle)]
                halves.append(self._send(_rows(arrays, middle, rows), rows - middle))
            except InvalidArgument:
                pass
            else:  # the rows are fine, the request was too big
                with self._lock:
                    self._limit = min(self._limit, middle)
                return _join(halves)
            raise

    def _send(self, arrays: Arrays, rows: int) -> Arrays:
        from modelserve.client import ClientError, InvalidInputError

        requests = [arrays] if self.batched else [_row(arrays, i) for i in range(rows)]
        answers = []
        for request in requests:
            try:
                result = self._client.predict(self.name, request, version=self._pinned)
            except InvalidInputError as exc:
                raise InvalidArgument(f"server refused the rows: {exc.message}") from exc
            except ClientError as exc:
                raise InternalError(f"server {self._url}: {exc.message}") from exc
            if result.model_version:
                self.version = str(result.model_version)
            answers.append(result)
        outputs: Arrays = {}
        for spec in self.outputs:
            values = [answer.get(spec.name) for answer in answers]
            if any(value is None for value in values):
                raise InternalError(f"server {self._url}: no output '{spec.name}'")
            joined = np.asarray(values[0]) if self.batched else np.stack(values)
            if joined.shape[:1] != (rows,):
                raise InternalError(
                    f"server {self._url}: output '{spec.name}' does not have {rows} rows"
                )
            outputs[spec.name] = joined
        return outputs

    def finish(self, arrays: Arrays, rows: int) -> Arrays:
        return arrays  # the client decoded them in their declared datatypes

    def identity(self) -> dict[str, Any]:
        return {
            "server": self._url,
            "model": self.name,
            "version": self._pinned or "(the server's default)",
            "inputs": [[s.name, s.datatype, list(s.shape)] for s in self.inputs],
            "outputs": [[s.name, s.datatype, list(s.shape)] for s in self.outputs],
        }

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _row(arrays: Arrays, index: int) -> Arrays:
    """One row without its batch dimension (a model without one)."""
    return {name: array[index] for name, array in arrays.items()}


def _rows(arrays: Arrays, start: int, stop: int) -> Arrays:
    return {name: array[start:stop] for name, array in arrays.items()}


def _join(parts: list[Arrays]) -> Arrays:
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
