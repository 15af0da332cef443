"""Shadow figures over several processes (routing/shadow_share.py): two mirrors sharing one
folder, as two ``--workers`` processes do, each answer with the figures of both; the merge of
the processes' states, by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelserve.routing.shadow import ShadowMirror
from modelserve.routing.shadow_share import COUNTS, SharedFigures, merged_document
from tests.unit.routing.test_shadow import answered, marks, mirror_of, stack, wait_until
from tests.unit.serving_stack import Stack

__all__ = ["marks", "stack"]  # the fixtures, shared with test_shadow.py


def state(kept: list[float], count: int, **counts: int) -> dict[str, object]:
    figures = dict.fromkeys(COUNTS, 0) | counts
    return {
        **figures,
        "diff_count": count,
        "diff_sum": float(np.mean(kept)) * count if kept else 0.0,
        "diff_max": max(kept, default=0.0),
        "kept": kept,
    }


def test_merged_figures_add_up_and_weigh_each_sample_by_what_it_stands_for() -> None:
    # process a: 1,000 differences of 1.0 (a sample of 4); process b: 100 of 10.0 (a sample of 2)
    a = state([1.0] * 4, 1000, mirrored=10, rows=40, agreed=30, failed=1)
    b = state([10.0] * 2, 100, mirrored=5, rows=10, agreed=10, dropped=2)
    merged = merged_document("3", [a, b])
    assert merged["version"] == "3"
    assert (merged["mirrored"], merged["failed"], merged["dropped"]) == (15, 1, 2)
    assert merged["rows"] == 50 and merged["agreement_ratio"] == pytest.approx(40 / 50)
    diff = merged["abs_diff"]
    assert diff["count"] == 1100 and diff["max"] == 10.0
    assert diff["mean"] == pytest.approx((1000 * 1.0 + 100 * 10.0) / 1100)
    # 1,000 of 1,100 differences are 1.0: the median is 1.0, the 99th percentile 10.0
    assert (diff["p50"], diff["p99"]) == (1.0, 10.0)
    # one process's figures are its own, quantiles as numpy computes them
    alone = merged_document("3", [state([0.0, 1.0, 2.0, 3.0], 4, rows=2, agreed=1)])
    assert alone["abs_diff"]["p50"] == 1.5 and alone["agreement_ratio"] == 0.5
    assert merged_document("3", [state([], 0)])["abs_diff"] is None


async def test_two_processes_answer_with_the_figures_of_both(stack: Stack, tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    first, second = (
        mirror_of(stack, share=SharedFigures(folder, name), share_s=0.02) for name in "ab"
    )
    mirrors: list[ShadowMirror] = [first, second]
    for mirror in mirrors:
        await mirror.start()
    rng = np.random.default_rng(4)
    sent_rows = []
    for i in range(30):  # a third of the copies to one process, the rest to the other
        rows = rng.random((8, 2)).astype(np.float32)
        sent_rows.append(rows)
        sent, primary = await answered(stack, rows)
        assert mirrors[i % 3 == 0].offer("m", "4", sent, primary)
    await wait_until(lambda: all(m.stats("m")["mirrored"] == 30 for m in mirrors))
    own = first.stats("m")
    assert own == second.stats("m") and own["version"] == "4"
    # version 4's score is version 1's plus x1: the differences of both processes together
    x = np.concatenate(sent_rows)
    base = (2 * x[:, 0]).astype(np.float32)
    expected = np.abs((base + x[:, 1]).astype(np.float64) - base.astype(np.float64))
    diff = own["abs_diff"]
    assert diff["count"] == 240 and diff["max"] == pytest.approx(expected.max(), rel=1e-9)
    assert diff["mean"] == pytest.approx(expected.mean(), rel=1e-9)
    for level, key in ((0.5, "p50"), (0.99, "p99")):
        assert diff[key] == pytest.approx(np.quantile(expected, level, method="inverted_cdf"))
    # a process that stopped still counts (its file stays); a newer mirror version wins
    await first.stop()
    sent, primary = await answered(stack, rng.random((8, 2)))
    assert second.offer("m", "3", sent, primary)
    await wait_until(lambda: second.stats("m")["mirrored"] == 1)
    assert second.stats("m")["version"] == "3"
    await second.stop()
    assert first.stats("m")["mirrored"] == 30  # it read the others for the last time at stop
    assert sorted(p.name for p in folder.iterdir()) == ["shadow-a.json", "shadow-b.json"]
