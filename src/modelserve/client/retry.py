"""When to try a call again, and how long to wait first.

A call is retried when the server refused it for now (503, gRPC UNAVAILABLE, a full queue) or
could not be reached, never for a mistake in the request (4xx): the same request would fail the
same way. A call that may have reached the server before the connection broke is retried only
when it is safe to run twice (reads and inference, not load, unload or labels).

The wait is exponential with full jitter (AWS's "Exponential Backoff and Jitter"), and at least
what the server asked for with ``Retry-After`` (HTTP) or ``retry-after`` trailing metadata
(gRPC), up to ``max_wait_s``: a server asking for longer gets the error back at once.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from modelserve.client.errors import ClientError, ConnectionFailedError

__all__ = ["RetryPolicy", "parse_retry_after"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int = 3
    """Tries after the first one."""
    backoff_s: float = 0.1
    """The first wait; it doubles with each retry (with full jitter)."""
    max_backoff_s: float = 5.0
    max_wait_s: float = 60.0
    """The longest ``Retry-After`` honoured."""

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError("retries must be 0 or more")

    def delay(self, attempt: int, error: ClientError, idempotent: bool) -> float | None:
        """Seconds to wait before try ``attempt + 1`` (``attempt`` counts from 0), or None when
        ``error`` must go to the caller."""
        if attempt >= self.retries or not error.retryable:
            return None
        if isinstance(error, ConnectionFailedError) and error.sent and not idempotent:
            return None
        backoff = random.uniform(0, min(self.max_backoff_s, self.backoff_s * 2**attempt))
        if error.retry_after is None:
            return backoff
        if error.retry_after > self.max_wait_s:
            return None
        return max(error.retry_after, backoff)

    def run(self, call: Callable[[], T], idempotent: bool = True) -> T:
        attempt = 0
        while True:
            try:
                return call()
            except ClientError as exc:
                wait = self.delay(attempt, exc, idempotent)
                if wait is None:
                    raise
            time.sleep(wait)
            attempt += 1

    async def run_async(self, call: Callable[[], Awaitable[T]], idempotent: bool = True) -> T:
        attempt = 0
        while True:
            try:
                return await call()
            except ClientError as exc:
                wait = self.delay(attempt, exc, idempotent)
                if wait is None:
                    raise
            await asyncio.sleep(wait)
            attempt += 1


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` value: a number of seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
