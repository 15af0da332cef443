"""``modelserve serve s3://bucket/prefix`` end to end, against a real S3-compatible server
(moto's standalone server on 127.0.0.1, tests/s3_server.py): the first sync, inference over
REST and gRPC, a new version picked up in poll mode, a restart with the store unreachable served
from the cache, and one-line errors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tests.harness import CliProcess, run_cli
from tests.s3_server import S3Server, _free_port

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]], dtype=np.float32)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


def infer(module: object, client: object) -> np.ndarray:
    x = module.InferInput("input", list(ROWS.shape), "FP32")  # type: ignore[attr-defined]
    x.set_data_from_numpy(ROWS)
    return client.infer("iris_onnx", [x]).as_numpy("label")  # type: ignore[attr-defined, no-any-return]


def test_serve_from_s3_polls_new_versions_and_survives_an_outage(
    s3: S3Server, model_repo: Path, tmp_path: Path
) -> None:
    bucket = s3.new_bucket()
    s3.upload_tree(model_repo / "iris_onnx", bucket, "repo/iris_onnx")
    args = [
        "serve", f"s3://{bucket}/repo", "--http-port", "0", "--grpc-port", "0",
        "--repository-cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    poll = ["--model-control-mode", "poll", "--repository-poll-secs", "0.3"]
    with CliProcess([*args, *poll], env=s3.env) as proc:
        port = proc.wait_ready()
        assert "model iris_onnx synced from s3://" in proc.log
        rest = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
        labels = infer(httpclient, rest)
        assert labels.shape == (2,)
        s3.upload_tree(model_repo / "iris_onnx" / "1", bucket, "repo/iris_onnx/2")
        deadline = time.monotonic() + 20
        while rest.get_model_metadata("iris_onnx")["versions"] != ["2"]:
            assert time.monotonic() < deadline, f"version 2 is served:\n{proc.log}"
            time.sleep(0.1)
        assert np.array_equal(infer(httpclient, rest), labels)
        rest.close()
        proc.signal()
        assert proc.wait() == 0
    unreachable = {**s3.env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{_free_port()}"}
    with CliProcess(args, env={**unreachable, "AWS_MAX_ATTEMPTS": "1"}) as proc:
        proc.wait_ready()
        assert "serving the copy in" in proc.log
        grpc_port = proc.wait_for(r"gRPC listening on [^\s]+:(\d+)").group(1)
        grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        assert grpc.get_model_metadata("iris_onnx").versions == ["2"]
        assert infer(grpcclient, grpc).shape == (2,)
        grpc.close()
        proc.signal()
        assert proc.wait() == 0


def test_explicit_mode_load_fetches_the_model_from_the_store(
    s3: S3Server, model_repo: Path, tmp_path: Path
) -> None:
    bucket = s3.new_bucket()
    args = [
        "serve", f"s3://{bucket}/models", "--http-port", "0", "--grpc-port", "0",
        "--model-control-mode", "explicit", "--repository-cache-dir", str(tmp_path / "c"),
    ]  # fmt: skip
    s3.client().put_object(Bucket=bucket, Key="models/placeholder/", Body=b"")
    with CliProcess(args, env=s3.env) as proc:
        base = f"http://127.0.0.1:{proc.wait_ready()}"
        s3.upload_tree(model_repo / "iris_onnx", bucket, "models/iris_onnx")
        loaded = httpx.post(f"{base}/v2/repository/models/iris_onnx/load", timeout=30)
        assert loaded.status_code == 200, loaded.text
        assert httpx.get(f"{base}/v2/models/iris_onnx/ready").status_code == 200
        missing = httpx.post(f"{base}/v2/repository/models/absent/load", timeout=30)
        assert missing.status_code == 404
        proc.signal()
        assert proc.wait() == 0


def test_errors_are_one_line(s3: S3Server, tmp_path: Path) -> None:
    gcs = run_cli(["serve", "gs://bucket/models"])
    assert gcs.returncode == 2
    assert gcs.stderr.strip() == (
        "modelserve: gs:// repositories need the gcs extra: pip install 'modelserve[gcs]'"
    )
    no_credentials = {
        "AWS_ENDPOINT_URL": s3.url,
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    args = ["serve", "s3://bucket/models", "--http-port", "0", "--grpc-port", "0"]
    denied = run_cli([*args, "--repository-cache-dir", str(tmp_path / "c")], env=no_credentials)
    assert denied.returncode == 2, denied.stderr
    last = denied.stderr.strip().splitlines()[-1]
    assert last.startswith("modelserve: cannot list s3://bucket/models:") and "redentials" in last
    assert "Traceback" not in denied.stderr
