"""RemoteRepository against a real S3-compatible server (moto's standalone server on 127.0.0.1,
tests/s3_server.py): the local copy, checksums, atomic swaps, settling, removal, failures."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelserve.serving.remote import (
    RemoteRepository,
    RemoteRepositoryError,
    check_remote_support,
    default_cache_dir,
)
from tests.s3_server import S3Server


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture
def bucket(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    return s3.new_bucket()


def put(s3: S3Server, bucket: str, key: str, body: bytes) -> None:
    s3.client().put_object(Bucket=bucket, Key=key, Body=body)


def objects(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / ".objects").iterdir())


ONNX = os.urandom(2048)


def test_sync_copies_every_model_with_checksums(s3: S3Server, bucket: str, tmp_path: Path) -> None:
    put(s3, bucket, "repo/iris/model.yaml", b"max_batch_size: 8\n")
    put(s3, bucket, "repo/iris/1/model.onnx", ONNX)
    put(s3, bucket, "repo/py/model.py", b"class M: pass\n")
    put(s3, bucket, "repo/py/1/", b"")  # an empty version folder: a folder marker
    put(s3, bucket, "repo/README.md", b"beside the models: ignored")
    remote = RemoteRepository(f"s3://{bucket}/repo", tmp_path / "cache")
    report = remote.sync()
    assert report.updated == ["iris", "py"] and report.failed == {}
    root = remote.local_root
    assert (root / "iris" / "1" / "model.onnx").read_bytes() == ONNX
    assert (root / "iris" / "model.yaml").read_text() == "max_batch_size: 8\n"
    assert (root / "py" / "1").is_dir() and not any((root / "py" / "1").iterdir())
    assert (root / "iris").is_symlink(), "swapped in as a link to a complete copy"
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == ["iris", "py"]
    state = (root / ".state" / "iris.json").read_text()
    assert hashlib.md5(ONNX).hexdigest() in state
    assert remote.sync().updated == [], "nothing changed, nothing downloaded"


def test_a_new_version_reuses_unchanged_files_and_keeps_the_previous_copy(
    s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    put(s3, bucket, "m/iris/1/model.onnx", ONNX)
    remote = RemoteRepository(f"s3://{bucket}/m", tmp_path / "cache")
    remote.sync()
    v1 = remote.local_root / "iris" / "1" / "model.onnx"
    inode = v1.stat().st_ino
    first = objects(remote.cache_dir)
    put(s3, bucket, "m/iris/2/model.onnx", ONNX[::-1])
    assert remote.sync().updated == ["iris"]
    assert v1.stat().st_ino == inode, "version 1 was hard-linked, not downloaded again"
    assert (remote.local_root / "iris" / "2" / "model.onnx").read_bytes() == ONNX[::-1]
    second = objects(remote.cache_dir)
    assert len(second) == 2 and set(first) < set(second), "the previous copy is kept"
    put(s3, bucket, "m/iris/3/model.onnx", ONNX)
    remote.sync()
    third = objects(remote.cache_dir)
    assert len(third) == 2 and first[0] not in third, "older copies are deleted"


def test_poll_takes_a_change_once_the_listing_is_stable(
    s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    put(s3, bucket, "r/iris/1/model.onnx", ONNX)
    remote = RemoteRepository(f"s3://{bucket}/r", tmp_path / "cache")
    remote.sync()
    put(s3, bucket, "r/iris/2/model.onnx", ONNX)
    first = remote.sync(settle=True)
    assert first.updated == [] and not (remote.local_root / "iris" / "2").exists()
    assert remote.sync(settle=True).updated == ["iris"]
    s3.client().delete_object(Bucket=bucket, Key="r/iris/1/model.onnx")
    s3.client().delete_object(Bucket=bucket, Key="r/iris/2/model.onnx")
    assert remote.sync(settle=True).removed == []
    assert remote.sync(settle=True).removed == ["iris"]
    assert not (remote.local_root / "iris").exists()


def test_an_object_changed_during_the_download_is_refused(
    s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    put(s3, bucket, "x/iris/1/model.onnx", ONNX)
    remote = RemoteRepository(f"s3://{bucket}/x", tmp_path / "cache")
    remote.sync()
    put(s3, bucket, "x/iris/2/model.onnx", ONNX)
    plan = remote.scan()
    put(s3, bucket, "x/iris/2/model.onnx", bytes(len(ONNX)))  # same size, other bytes
    report = remote.apply(plan)
    assert "checksum mismatch" in report.failed["iris"]
    assert not (remote.local_root / "iris" / "2").exists(), "the serving copy is untouched"
    assert (remote.local_root / "iris" / "1" / "model.onnx").read_bytes() == ONNX
    assert not any(p.startswith(".partial-") for p in objects(remote.cache_dir))
    assert remote.sync().updated == ["iris"], "the next sync takes the new bytes"
    assert (remote.local_root / "iris" / "2" / "model.onnx").read_bytes() == bytes(len(ONNX))


def test_an_object_deleted_during_the_download_is_refused(
    s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    put(s3, bucket, "d/iris/1/model.onnx", ONNX)
    remote = RemoteRepository(f"s3://{bucket}/d", tmp_path / "cache")
    plan = remote.scan()
    s3.client().delete_object(Bucket=bucket, Key="d/iris/1/model.onnx")
    report = remote.apply(plan)
    assert "download" in report.failed["iris"]
    assert not (remote.local_root / "iris").exists()
    assert not any(p.startswith(".partial-") for p in objects(remote.cache_dir))


def test_one_model_at_the_prefix(s3: S3Server, bucket: str, tmp_path: Path) -> None:
    put(s3, bucket, "one/model.onnx", ONNX)
    remote = RemoteRepository(f"s3://{bucket}/one/", tmp_path / "cache", single_model="iris")
    assert remote.sync().updated == ["iris"]
    assert remote.local_root == tmp_path / "cache" / "iris"
    assert (remote.local_root / "model.onnx").read_bytes() == ONNX
    empty = RemoteRepository(f"s3://{bucket}/none", tmp_path / "other", single_model="iris")
    with pytest.raises(RemoteRepositoryError, match="no objects under"):
        empty.sync()


def test_explicit_names_sync_only_those(s3: S3Server, bucket: str, tmp_path: Path) -> None:
    put(s3, bucket, "e/a/1/model.onnx", ONNX)
    put(s3, bucket, "e/b/1/model.onnx", ONNX)
    remote = RemoteRepository(f"s3://{bucket}/e", tmp_path / "cache")
    assert remote.sync(["b"]).updated == ["b"]
    assert not (remote.local_root / "a").exists()


def test_credentials_come_from_the_environment(
    s3: S3Server, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(s3, bucket, "c/iris/1/model.onnx", ONNX)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    remote = RemoteRepository(f"s3://{bucket}/c", tmp_path / "cache")
    with pytest.raises(RemoteRepositoryError, match=r"cannot list .*credentials"):
        remote.sync()
    assert not remote.has_copy()


def test_kserve_endpoint_variable(
    s3: S3Server, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(s3, bucket, "k/iris/1/model.onnx", ONNX)
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("S3_ENDPOINT", s3.url.removeprefix("http://"))
    monkeypatch.setenv("S3_USE_HTTPS", "0")
    remote = RemoteRepository(f"s3://{bucket}/k", tmp_path / "cache")
    assert remote.sync().updated == ["iris"]


def test_cache_folders_are_checked(s3: S3Server, bucket: str, tmp_path: Path) -> None:
    put(s3, bucket, "p/iris/1/model.onnx", ONNX)
    put(s3, bucket, "q/other/1/model.onnx", ONNX)
    cache = tmp_path / "cache"
    RemoteRepository(f"s3://{bucket}/p", cache).sync()
    RemoteRepository(f"s3://{bucket}/q", cache).sync()
    assert sorted(p.name for p in cache.iterdir() if not p.name.startswith(".")) == ["other"]
    foreign = tmp_path / "foreign"
    (foreign / "stuff").mkdir(parents=True)
    with pytest.raises(RemoteRepositoryError, match="not a modelserve cache"):
        RemoteRepository(f"s3://{bucket}/p", foreign).sync()
    assert default_cache_dir("s3://a/b") != default_cache_dir("s3://a/c")


def test_schemes_without_their_library_name_the_extra() -> None:
    check_remote_support("s3://bucket/prefix")
    with pytest.raises(RemoteRepositoryError, match=r"pip install 'modelserve\[gcs\]'"):
        check_remote_support("gs://bucket/prefix")
    with pytest.raises(RemoteRepositoryError, match=r"pip install 'modelserve\[azure\]'"):
        check_remote_support("az://container/prefix")
    with pytest.raises(RemoteRepositoryError, match="unknown repository URL scheme"):
        check_remote_support("nope://x")
