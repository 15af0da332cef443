"""The CloudEvents sink: KServe's payload-logger format, so KServe's existing consumers work
unchanged.

Each inference becomes a request event (``org.kubeflow.serving.inference.request``, the V2 JSON
request as its data) and a response event (``…inference.response``, the V2 JSON response), or,
for a failure, an error event (``…inference.error``: ``{"id", "error", "code"}``), all with the
request id as ``ce-id``; ``mode: request`` / ``response`` send only one side. Attributes:
``specversion`` 1.0, ``id``, ``source``, ``type``, ``time`` and the extensions
``inferenceservicename`` (the model), ``endpoint``, ``component``, ``namespace`` (when set), plus
``modelversion`` and ``statuscode``.

Content modes: ``binary`` (KServe's: attributes as ``ce-*`` headers, the document as the body,
one POST per event), ``structured`` (``application/cloudevents+json``, one POST per event) and
``batch`` (``application/cloudevents-batch+json``: one POST per batch).

One pooled ``httpx.AsyncClient`` per sink, kept for the sink's life (keep-alive connections,
``max_connections`` of them; KServe builds a client per event). A batch's POSTs go out
concurrently over the pool. An event counts as sent once all its POSTs were accepted (2xx);
a retry sends only the POSTs that were not. 408, 429, 5xx and connection errors are retried;
any other status is the receiver refusing the event, which goes to the dead-letter file at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson

from modelserve.config.payload import CloudEventsSinkConfig
from modelserve.monitoring.events import InferenceEvent
from modelserve.monitoring.records import (
    LogPolicy,
    dumps,
    error_document,
    request_document,
    response_document,
    rfc3339,
    status_code,
)
from modelserve.monitoring.sinks.delivery import DeliveryError, Pending, describe
from modelserve.monitoring.sinks.registry import SinkContext

__all__ = ["ERROR_TYPE", "REQUEST_TYPE", "RESPONSE_TYPE", "CloudEventsSink"]

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
ERROR_TYPE = "org.kubeflow.serving.inference.error"
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
RETRIABLE = frozenset({408, 425, 429})


class Message:
    """One CloudEvent: its attributes and its data (JSON bytes)."""

    __slots__ = ("attributes", "data")

    def __init__(self, attributes: dict[str, str], data: bytes) -> None:
        self.attributes = attributes
        self.data = data

    def headers(self) -> dict[str, str]:
        """Binary mode: attributes as ``ce-*`` headers."""
        headers = {f"ce-{name}": value for name, value in self.attributes.items()}
        headers["content-type"] = "application/json"
        return headers

    def structured(self) -> dict[str, Any]:
        """Structured mode: the event as one JSON object."""
        return {
            **self.attributes,
            "datacontenttype": "application/json",
            "data": orjson.Fragment(self.data),
        }


class CloudEventsSink:
    def __init__(self, config: CloudEventsSinkConfig, context: SinkContext) -> None:
        self._config = config
        self._host = context.host
        self._url = config.url
        limits = httpx.Limits(
            max_connections=config.max_connections,
            max_keepalive_connections=config.max_connections,
        )
        # The worker bounds each attempt (timeout_s); waiting for a pooled connection is part
        # of it, so the pool itself does not time out.
        timeout = httpx.Timeout(config.timeout_s, pool=None)
        self._client = httpx.AsyncClient(
            limits=limits, timeout=timeout, headers=config.headers, follow_redirects=False
        )

    # ---- encoding ----------------------------------------------------------------------------

    def _attributes(self, event: InferenceEvent, kind: str, time_ns: int) -> dict[str, str]:
        config = self._config
        attributes = {
            "specversion": "1.0",
            "id": event.id,
            "source": config.source or f"http://{self._host}/v2/models/{event.model}",
            "type": kind,
            "time": rfc3339(time_ns),
            "inferenceservicename": event.model,
            "endpoint": config.endpoint or event.arm or "default",
            "component": config.component,
            "modelversion": event.version,
            "statuscode": str(status_code(event)),
        }
        if config.namespace:
            attributes["namespace"] = config.namespace
        return attributes

    def encode(self, event: InferenceEvent, policy: LogPolicy) -> list[Message]:
        """The event's CloudEvents (the ones still to send, on retries)."""
        messages = []
        answered = event.arrived_ns + event.latency_ns
        if policy.logs_inputs:
            body = dumps(request_document(event, policy))
            messages.append(Message(self._attributes(event, REQUEST_TYPE, event.arrived_ns), body))
        if event.code is not None:
            body = dumps(error_document(event))
            messages.append(Message(self._attributes(event, ERROR_TYPE, answered), body))
        elif policy.logs_outputs:
            body = dumps(response_document(event, policy))
            messages.append(Message(self._attributes(event, RESPONSE_TYPE, answered), body))
        return messages

    # ---- sending -----------------------------------------------------------------------------

    async def send(self, batch: list[Pending]) -> list[Pending]:
        if self._config.content_mode == "batch":
            await self._send_batch(batch)
            return []
        structured = self._config.content_mode == "structured"
        posts = [(pending, message) for pending in batch for message in list(pending.payload)]
        results = await asyncio.gather(
            *(self._post_one(message, structured) for _, message in posts),
            return_exceptions=True,
        )
        left: dict[int, Pending] = {}
        for (pending, message), result in zip(posts, results, strict=True):
            if result is None:
                pending.payload.remove(message)
                continue
            if isinstance(result, asyncio.CancelledError):
                raise result
            permanent = isinstance(result, DeliveryError) and result.permanent
            if id(pending) not in left or permanent:
                pending.fail(describe(result), permanent)
            left[id(pending)] = pending
        return list(left.values())

    async def _post_one(self, message: Message, structured: bool) -> None:
        if structured:
            content = orjson.dumps(message.structured())
            headers = {"content-type": STRUCTURED}
        else:
            content, headers = message.data, message.headers()
        reply = await self._client.post(self._url, content=content, headers=headers)
        _check(reply)

    async def _send_batch(self, batch: list[Pending]) -> None:
        events = [message.structured() for pending in batch for message in pending.payload]
        if not events:
            return
        reply = await self._client.post(
            self._url, content=orjson.dumps(events), headers={"content-type": BATCH}
        )
        _check(reply)

    async def close(self) -> None:
        await self._client.aclose()


def _check(reply: httpx.Response) -> None:
    status = reply.status_code
    if 200 <= status < 300:
        return
    permanent = status < 500 and status not in RETRIABLE
    raise DeliveryError(f"the receiver answered HTTP {status}", permanent=permanent)
