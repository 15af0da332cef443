"""The metrics exposition: several worker processes add up in multiprocess mode; the metrics
listener answers /metrics only."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry

from modelserve.observability import Observability
from modelserve.observability.exposition import MetricsListener, render
from tests.harness import run_python
from tests.unit.observability.metric_samples import sample_key, samples_of

WORKER = """
import sys
from modelserve.observability import Observability
from tests.unit.observability.metric_samples import record_requests
observability = Observability(process_metrics=False, multiprocess_dir=sys.argv[1])
observability.watch_models(lambda: [])
record_requests(observability)
observability.refresh()
"""


def test_multiprocess_mode_adds_up_the_workers(tmp_path: Path) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):
        result = run_python(WORKER, str(tmp_path), env=env)
        assert result.returncode == 0, result.stderr
    body, _ = render(CollectorRegistry(), str(tmp_path), None)
    values = samples_of(body.decode())
    m = {"model": "m", "version": "1"}
    assert values[sample_key("modelserve_inference_requests_total", **m, outcome="success")] == 10
    assert values[sample_key("modelserve_inference_request_duration_seconds_count", **m)] == 12
    assert values[sample_key("modelserve_inference_batch_size_sum", **m)] == 30


async def test_metrics_listener_answers_only_metrics() -> None:
    observability = Observability(process_metrics=False)
    listener = MetricsListener(observability.exposition)
    await listener.start("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{listener.port}") as client:
            ok = await client.get("/metrics")
            assert ok.status_code == 200 and "modelserve_http_connections" in ok.text
            openmetrics = await client.get(
                "/metrics", headers={"accept": "application/openmetrics-text"}
            )
            assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
            assert (await client.get("/other")).status_code == 404
            assert (await client.post("/metrics")).status_code == 405
    finally:
        await listener.stop()
