"""The Observability hub: requests recorded, metrics flushed at scrape time, gauges of removed
versions dropped."""

from __future__ import annotations

import asyncio

from prometheus_client import generate_latest

from modelserve.observability import ModelSample, Observability
from tests.unit.observability.metric_samples import record_requests, sample_key, samples_of


def test_metrics_are_flushed_at_scrape_time() -> None:
    observability = Observability(process_metrics=False)
    observability.watch_models(lambda: [ModelSample("m", "1", "READY", 2, 1, 0.5)])
    record_requests(observability)
    body, content_type = asyncio.run(observability.exposition())
    assert content_type.startswith("text/plain")
    values = samples_of(body.decode())
    m = {"model": "m", "version": "1"}
    assert values[sample_key("modelserve_inference_requests_total", **m, outcome="success")] == 5
    assert (
        values[sample_key("modelserve_inference_requests_total", **m, outcome="invalid_argument")]
        == 1
    )
    assert values[sample_key("modelserve_inference_request_duration_seconds_count", **m)] == 6
    assert values[sample_key("modelserve_inference_batch_size_sum", **m)] == 15
    assert values[sample_key("modelserve_inference_compute_duration_seconds_sum", **m)] == 0.01
    assert values[sample_key("modelserve_model_queue_depth", **m)] == 2
    assert values[sample_key("modelserve_model_batches_in_flight", **m)] == 1
    assert values[sample_key("modelserve_model_state", **m, state="READY")] == 1
    assert not any(name.startswith("process_") for name, _ in values)


def test_gauges_of_a_removed_version_go_away() -> None:
    observability = Observability(process_metrics=False)
    samples = [ModelSample("m", "1", "READY", 0, 0, 1.0), ModelSample("m", "2", "LOADING")]
    observability.watch_models(lambda: samples)
    observability.refresh()
    text = generate_latest(observability.registry).decode()
    assert 'version="2"' in text and "modelserve_model_load_duration_seconds" in text
    samples.pop()
    observability.refresh()
    text = generate_latest(observability.registry).decode()
    assert 'version="2"' not in text and 'version="1"' in text
