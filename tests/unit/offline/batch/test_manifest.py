"""The output folder: fresh, resumed, refused (another job, foreign files), overwritten; and the
part files as the truth when the manifest lags behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelserve.offline.batch.errors import BatchError
from modelserve.offline.batch.latency import LatencyHistogram
from modelserve.offline.batch.manifest import Manifest, ShardEntry, lock_output, prepare_output
from modelserve.offline.batch.runner import ShardResult
from modelserve.offline.batch.sources import Shard

JOB = {"model": {"model": "m", "version": "1"}, "format": "jsonl", "shard_rows": 2}


def _manifest(shards: int = 3) -> Manifest:
    entries = [
        ShardEntry(Shard(i, "/in.jsonl", "jsonl", None, i * 10, i * 10 + 10, 2, i * 2, i * 2), n)
        for i, n in enumerate(f"part-{i:05d}.jsonl" for i in range(shards))
    ]
    return Manifest(dict(JOB), entries)


def test_a_fresh_folder_then_a_resume_of_the_same_job(tmp_path: Path) -> None:
    out = tmp_path / "out"
    handle = lock_output(out)
    assert prepare_output(out, JOB, overwrite=False) is None
    manifest = _manifest()
    manifest.shards[0].record(ShardResult(0, "part-00000.jsonl", 2, 2, 0, "abc", 4))
    (out / "part-00000.jsonl").write_bytes(b"a\nb\n")
    manifest.save(out)
    handle.close()
    again = prepare_output(out, JOB, overwrite=False)
    assert again is not None
    again.reconcile(out)
    assert [e.status for e in again.shards] == ["done", "pending", "pending"]
    assert again.shards[0].shard == manifest.shards[0].shard


def test_parts_written_after_the_last_manifest_write_count_as_done(tmp_path: Path) -> None:
    manifest = _manifest()
    manifest.save(tmp_path)
    (tmp_path / "part-00001.jsonl").write_bytes(b'{"y": 1}\n{"y": 2}\n')
    (tmp_path / "_errors").mkdir()
    (tmp_path / "_errors" / "part-00001.jsonl").write_bytes(b'{"row": 3}\n')
    loaded = Manifest.load(tmp_path)
    assert loaded is not None
    loaded.reconcile(tmp_path)
    entry = loaded.shards[1]
    assert (entry.status, entry.rows, entry.errors, entry.bytes) == ("done", 2, 1, 18)
    assert len(entry.sha256) == 64


def test_a_done_part_that_is_gone_or_changed_runs_again(tmp_path: Path) -> None:
    manifest = _manifest(2)
    for index in range(2):
        manifest.shards[index].record(
            ShardResult(index, f"part-{index:05d}.jsonl", 2, 2, 0, "x", 3, LatencyHistogram())
        )
    (tmp_path / "part-00000.jsonl").write_bytes(b"abcd")  # not the recorded 3 bytes
    manifest.reconcile(tmp_path)
    assert [e.status for e in manifest.shards] == ["pending", "pending"]


def test_another_jobs_folder_and_foreign_files_are_refused(tmp_path: Path) -> None:
    _manifest().save(tmp_path)
    other = {**JOB, "format": "csv"}
    with pytest.raises(BatchError, match=r"another job.*format"):
        prepare_output(tmp_path, other, overwrite=False)
    (tmp_path / "part-00000.jsonl").write_text("old")
    (tmp_path / "_SUCCESS").write_text("{}")
    assert prepare_output(tmp_path, other, overwrite=True) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(BatchError, match=r"not a batch job's output.*mine\.txt"):
        prepare_output(tmp_path, JOB, overwrite=True)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_one_job_per_folder_at_a_time(tmp_path: Path) -> None:
    held = lock_output(tmp_path)
    with pytest.raises(BatchError, match="another batch job"):
        lock_output(tmp_path)
    held.close()
    lock_output(tmp_path).close()


def test_latency_percentiles() -> None:
    histogram = LatencyHistogram()
    for ms in range(1, 101):
        histogram.add(ms * 1_000_000)
    other = LatencyHistogram()
    other.add(500_000_000)
    histogram.merge(other)
    assert histogram.total == 101
    assert histogram.percentile_ms(50) == pytest.approx(51, rel=0.02)
    assert histogram.percentile_ms(99) == pytest.approx(100, rel=0.02)
    assert histogram.percentile_ms(100) == pytest.approx(500, rel=0.02)
    assert LatencyHistogram().percentile_ms(50) is None
