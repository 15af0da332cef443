"""Triton's statistics rules: what a success, a failure and an execution add up to."""

from __future__ import annotations

from modelserve.observability.stats import StatsBook


def test_statistics_rules() -> None:
    book = StatsBook()
    stats = book.version("m", "1")
    stats.succeeded(rows=4, total_ns=100, queue_ns=10, input_ns=5, infer_ns=70, output_ns=15)
    stats.executed(batch_size=6, input_ns=5, infer_ns=70, output_ns=15)
    stats.succeeded(rows=2, total_ns=90, queue_ns=20, input_ns=4, infer_ns=70, output_ns=6)
    stats.failed(total_ns=7)
    snap = book.snapshot("m", "1")
    assert (snap.inference_count, snap.execution_count) == (6, 1)
    assert (snap.success.count, snap.success.ns, snap.fail.count, snap.fail.ns) == (2, 190, 1, 7)
    counts = {snap.queue.count, snap.compute_input.count, snap.compute_infer.count}
    assert counts == {snap.compute_output.count} == {2}
    assert (snap.queue.ns, snap.compute_infer.ns) == (30, 140)
    (batch,) = snap.batch_stats
    assert (batch.batch_size, batch.compute_infer.count, batch.compute_infer.ns) == (6, 1, 70)
    assert snap.last_inference > 0
    empty = book.snapshot("other", "2")
    assert (empty.name, empty.inference_count, empty.batch_stats) == ("other", 0, ())
