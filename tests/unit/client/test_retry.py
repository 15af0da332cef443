"""When the client tries again, and how long it waits."""

from __future__ import annotations

import email.utils
import time

import pytest

from modelserve.client.errors import (
    ClientError,
    ConnectionFailedError,
    InvalidInputError,
    UnavailableError,
    error_for_grpc,
    error_for_http,
)
from modelserve.client.retry import RetryPolicy, parse_retry_after
from modelserve.errors import ErrorCode


def test_retryable_errors_and_not_4xx() -> None:
    policy = RetryPolicy(retries=2, backoff_s=0.01)
    assert policy.delay(0, error_for_http(503, "busy", None), True) is not None
    assert policy.delay(0, error_for_http(400, "bad", None), True) is None
    assert policy.delay(0, error_for_http(404, "no", None), True) is None
    assert policy.delay(0, error_for_http(500, "boom", None), True) is None
    assert policy.delay(2, error_for_http(503, "busy", None), True) is None, "retries spent"


def test_retry_after_is_a_floor_and_has_a_ceiling() -> None:
    policy = RetryPolicy(retries=3, backoff_s=0.01, max_wait_s=10)
    assert policy.delay(0, error_for_http(503, "busy", None, retry_after=1.5), True) == 1.5
    assert policy.delay(0, error_for_http(503, "busy", None, retry_after=11), True) is None


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(retries=20, backoff_s=0.1, max_backoff_s=0.4)
    error = UnavailableError("busy")
    for attempt in range(20):
        wait = policy.delay(attempt, error, True)
        assert wait is not None and 0 <= wait <= min(0.4, 0.1 * 2**attempt)


def test_a_call_that_may_have_arrived_is_retried_only_when_idempotent() -> None:
    policy = RetryPolicy(retries=1)
    before = ConnectionFailedError("refused", sent=False)
    after = ConnectionFailedError("reset", sent=True)
    assert policy.delay(0, before, idempotent=False) is not None
    assert policy.delay(0, after, idempotent=True) is not None
    assert policy.delay(0, after, idempotent=False) is None


def test_run_retries_then_raises_the_last_error() -> None:
    tries: list[int] = []

    def failing() -> None:
        tries.append(1)
        raise UnavailableError("busy")

    with pytest.raises(UnavailableError):
        RetryPolicy(retries=2, backoff_s=0.001).run(failing)
    assert len(tries) == 3

    def bad() -> None:
        tries.append(1)
        raise InvalidInputError("bad")

    tries.clear()
    with pytest.raises(InvalidInputError):
        RetryPolicy(retries=2).run(bad)
    assert len(tries) == 1


async def test_run_async_returns_once_it_works() -> None:
    tries: list[int] = []

    async def flaky() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise ConnectionFailedError("refused")
        return "ok"

    assert await RetryPolicy(retries=3, backoff_s=0.001).run_async(flaky) == "ok"
    assert len(tries) == 3


def test_parse_retry_after() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < (parse_retry_after(future) or 0) <= 30


def test_status_mapping_is_the_projects_one_table() -> None:
    assert error_for_http(404, "x", "rid").code is ErrorCode.NOT_FOUND
    assert error_for_http(404, "x", "rid").request_id == "rid"
    assert error_for_http(418, "x", None).code is ErrorCode.INVALID_ARGUMENT
    unavailable = error_for_grpc("UNAVAILABLE", "x", None)
    assert isinstance(unavailable, UnavailableError) and unavailable.status == 503
    full = error_for_grpc("RESOURCE_EXHAUSTED", "queue full", None, retry_after=1.0)
    assert isinstance(full, UnavailableError) and full.retryable
    too_big = error_for_grpc("RESOURCE_EXHAUSTED", "message too large", None)
    assert type(too_big) is ClientError and not too_big.retryable
    assert too_big.code is ErrorCode.PAYLOAD_TOO_LARGE
