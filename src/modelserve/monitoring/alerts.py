"""Alerts: a monitored version that drifts, whose accuracy falls below
``alerts.min_accuracy``, or whose label coverage falls below ``alerts.min_label_coverage``.

An alert is raised (and later cleared) once per change of state, never once per window:

- on the event bus, as an inference event with ``status: "alert"``, no tensors, and the
  figures as its parameters (``kind``, ``state``, ``value``, ``threshold``, ``window``), so
  every payload sink of the model (file, Kafka, Redis, CloudEvents) records it with the model's
  predictions; sampling does not apply to alerts;
- to ``alerts.webhook`` as a JSON POST, retried with exponential backoff (``webhook_retries``
  times), from a task of its own: a slow hook never delays anything else;
- as ``modelserve_alert_active{model,version,kind}``.

The hook is where a retraining pipeline starts from.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

from modelserve.config.monitoring import AlertsConfig
from modelserve.monitoring.events import EventBus, InferenceEvent
from modelserve.monitoring.metrics import MonitoringMetrics
from modelserve.types import ParamValue

__all__ = ["ALERT_STATUS", "Alert", "Alerts"]

log = logging.getLogger("modelserve.monitoring.alerts")

ALERT_STATUS = "alert"
BACKOFF_S = 0.5
BACKOFF_MAX_S = 30.0


@dataclass(frozen=True, slots=True)
class Alert:
    model: str
    version: str
    kind: str
    """``drift``, ``accuracy`` or ``label_coverage``."""
    active: bool
    value: float
    threshold: float
    window: str
    details: dict[str, Any]

    def document(self) -> dict[str, Any]:
        return {
            "type": "modelserve.alert",
            "model": self.model,
            "version": self.version,
            "kind": self.kind,
            "state": "raised" if self.active else "cleared",
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "value": self.value,
            "threshold": self.threshold,
            "window": self.window,
            **self.details,
        }

    def parameters(self) -> dict[str, ParamValue]:
        return {
            "kind": self.kind,
            "state": "raised" if self.active else "cleared",
            "value": self.value,
            "threshold": self.threshold,
            "window": self.window,
        }


class Alerts:
    """The alert states of every monitored version. ``update`` is called on the event loop."""

    def __init__(self, bus: EventBus, metrics: MonitoringMetrics) -> None:
        self._bus = bus
        self._metrics = metrics
        self._active: dict[tuple[str, str, str], bool] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: Any = None

    def active(self, model: str, version: str, kind: str) -> bool:
        return self._active.get((model, version, kind), False)

    def update(self, alert: Alert, config: AlertsConfig, changed: bool) -> None:
        """Record the state ``alert`` measured; publish it when ``changed`` (this process
        changed the state in the shared store: one process publishes each change, and a
        first measurement that is not alarming publishes nothing)."""
        self._active[(alert.model, alert.version, alert.kind)] = alert.active
        self._metrics.alert_active.labels(alert.model, alert.version, alert.kind).set(
            int(alert.active)
        )
        if not changed:
            return
        if alert.active:
            log.warning(
                "alert: model %s version %s: %s %.4g (threshold %.4g, %s)",
                alert.model,
                alert.version,
                alert.kind,
                alert.value,
                alert.threshold,
                alert.window,
            )
        else:
            log.info(
                "alert cleared: model %s version %s: %s", alert.model, alert.version, alert.kind
            )
        self._publish(alert)
        if config.webhook is not None:
            task = asyncio.get_running_loop().create_task(self._post(alert, config))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _publish(self, alert: Alert) -> None:
        event = InferenceEvent(
            f"alert-{uuid.uuid4().hex}",
            alert.model,
            alert.version,
            (),
            (),
            alert.parameters(),
            ALERT_STATUS,
            None,
            None,
            time.time_ns(),
            0,
            "monitoring",
            {},
        )
        try:
            self._bus.broadcast(event)
        except Exception:
            log.exception("could not publish an alert event")

    async def _post(self, alert: Alert, config: AlertsConfig) -> None:
        import httpx

        assert config.webhook is not None
        if self._client is None:
            self._client = httpx.AsyncClient()
        body = alert.document()
        delay = BACKOFF_S
        for attempt in range(config.webhook_retries + 1):
            try:
                reply = await self._client.post(
                    config.webhook, json=body, timeout=config.webhook_timeout_s
                )
                if reply.status_code < 300:
                    return
                problem = f"HTTP {reply.status_code}"
                if 400 <= reply.status_code < 500 and reply.status_code not in (408, 429):
                    break  # the hook refuses it: retrying will not help
            except httpx.HTTPError as exc:
                problem = str(exc) or type(exc).__name__
            if attempt < config.webhook_retries:
                await asyncio.sleep(random.uniform(0, delay))
                delay = min(delay * 2, BACKOFF_MAX_S)
        log.error(
            "alert webhook %s failed for model %s (%s): %s",
            config.webhook,
            alert.model,
            alert.kind,
            problem,
        )

    async def stop(self, timeout_s: float) -> None:
        """Let pending webhook calls finish within ``timeout_s``, then close the client."""
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=timeout_s)
            for task in pending:
                task.cancel()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
