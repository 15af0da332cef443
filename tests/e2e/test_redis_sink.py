"""The Redis Streams payload sink end to end against Debian's real ``redis-server`` (started here
on a free port, killed and restarted on the same port)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.brokers import RedisServer
from tests.harness import Servers
from tests.payload_helpers import BODY, make_repo, payload_metric, wait_for


@pytest.fixture
def redis_server(tmp_path: Path) -> Any:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def _outcomes(base: str, sink: str) -> dict[str, float]:
    return {
        outcome: payload_metric(
            base, "modelserve_payload_events_total", model="iris", sink=sink, outcome=outcome
        )
        or 0.0
        for outcome in ("sent", "dropped", "failed")
    }


def test_redis_sink_through_a_broker_restart(
    model_repo: Path, tmp_path: Path, serve: Servers, redis_server: RedisServer
) -> None:
    sink = {
        "type": "redis",
        "url": redis_server.url,
        "stream": "modelserve:iris",
        "maxlen": 100_000,
        "max_queue_events": 300,
        "batch_size": 50,
        "linger_ms": 5,
        "max_retries": 1000,
        "retry_backoff_ms": 20,
        "retry_backoff_max_ms": 200,
        "timeout_s": 2,
    }
    repo = make_repo(model_repo, tmp_path / "repo", iris={"sinks": [sink]})
    running = serve(repo, log_dir=tmp_path / "logs")
    name = f"redis:127.0.0.1:{redis_server.port}/0/modelserve:iris"
    client = redis_server.client()
    with httpx.Client(base_url=running.http) as http:
        for i in range(200):
            assert http.post("/v2/models/iris/infer", json={**BODY, "id": f"a{i}"}).is_success
        wait_for(lambda: client.xlen("modelserve:iris") == 200)
        [(_, first)] = client.xrange("modelserve:iris", count=1)
        assert first[b"key"] == b"a0" and first[b"model"] == b"iris"
        assert first[b"status"] == b"success" and first[b"version"] == b"1"
        record = orjson.loads(first[b"event"])
        assert record["id"] == "a0" and record["inputs"][0]["data"] == [1.0, 2.0, 3.0, 4.0]

        redis_server.kill()
        for i in range(1000):  # every request succeeds while Redis is down
            assert http.post("/v2/models/iris/infer", json={**BODY, "id": f"b{i}"}).is_success
        redis_server.start()  # the same port, its append-only file: the 200 are still there

    def settled() -> bool:
        return payload_metric(running.http, "modelserve_payload_queue_events", sink=name) == 0

    wait_for(settled)
    counts = _outcomes(running.http, name)
    client = redis_server.client()
    keys = [fields[b"key"].decode() for _, fields in client.xrange("modelserve:iris")]
    assert counts["failed"] == 0 and counts["sent"] + counts["dropped"] == 1200
    assert len(keys) == counts["sent"] == len(set(keys))
    # what the queue could hold (300, plus one batch being delivered) was kept, in order
    assert counts["sent"] >= 200 + 300
    assert keys[:200] == [f"a{i}" for i in range(200)]
    assert keys[200:] == [f"b{i}" for i in range(len(keys) - 200)]
