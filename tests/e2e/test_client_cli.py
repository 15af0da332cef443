"""The client commands against real servers: every input format gives the same rows, each
output format prints what it should, every flag works from the environment, and a failure is
one line with a non-zero exit code, never a traceback.

Most cases call the command line's ``main`` in this process (the real parser and commands, with
stdin, stdout, stderr and the environment of the test); a few run ``python -m modelserve`` in a
subprocess, as a user does, where a terminal or the exit code of the process itself matters."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelserve.cli.main import main
from tests.conftest import RunningServer, Servers
from tests.harness import run_cli
from tests.recorder import recording_server


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Ran]:
    """``cli(args, env, stdin)``: the command line's main in this process."""

    def run(args: list[str], env: dict[str, str] | None = None, stdin: str | None = None) -> Ran:
        with monkeypatch.context() as patch:
            for key in [k for k in os.environ if k.startswith("MODELSERVE_")]:
                patch.delenv(key)
            for key, value in (env or {}).items():
                patch.setenv(key, value)
            patch.setattr(sys, "stdin", io.StringIO(stdin or ""))
            code = main(args)
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return run


X = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]]
HEADER = ["label", "probabilities[0]", "probabilities[1]", "probabilities[2]"]


@pytest.fixture(scope="module")
def explicit(model_repo: Path, serve_module: Servers) -> RunningServer:
    return serve_module(
        model_repo, model_control_mode="explicit", load_models=("iris_onnx", "python_add")
    )


def predict(
    cli: Callable[..., Ran], server: RunningServer, *args: str, stdin: str | None = None, **env: str
) -> Ran:
    return cli(["predict", "iris_onnx", *args], {"MODELSERVE_URL": server.url, **env}, stdin)


def one_line_error(result: Any, code: int, text: str) -> None:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("modelserve: "), result
    assert text in result.stderr and "Traceback" not in result.stderr


def _inputs(folder: Path) -> dict[str, tuple[str, str | None]]:
    """The same three rows in every format predict reads: (--input, stdin)."""
    names = ["x0", "x1", "x2", "x3"]
    records = [dict(zip(names, row, strict=True)) for row in X]
    files = {
        "rows.json": json.dumps(X),
        "records.json": json.dumps(records),
        "inputs.json": json.dumps({"input": X}),
        "v2.json": json.dumps(
            {"inputs": [{"name": "input", "datatype": "FP32", "shape": [3, 4], "data": X}]}
        ),
        "rows.jsonl": "\n".join(json.dumps(r) for r in records),
        "rows.csv": "x0,x1,x2,x3\n" + "\n".join(",".join(map(str, row)) for row in X),
    }
    for name, text in files.items():
        (folder / name).write_text(text)
    pq.write_table(pa.Table.from_pylist(records), folder / "rows.parquet")
    np.save(folder / "rows.npy", np.array(X))
    np.savez(folder / "inputs.npz", input=np.array(X, dtype=np.float32))
    chosen: dict[str, tuple[str, str | None]] = {
        name: (str(folder / name), None) for name in [*files, "rows.parquet", "rows.npy"]
    }
    chosen["inputs.npz"] = (str(folder / "inputs.npz"), None)
    chosen["stdin json"] = ("-", json.dumps(X))
    chosen["stdin csv"] = ("-", files["rows.csv"])
    return chosen


def test_every_input_format_gives_the_same_rows(
    cli: Callable[..., Ran], server: RunningServer, tmp_path: Path
) -> None:
    answers = {}
    for name, (path, stdin) in _inputs(tmp_path).items():
        result = predict(cli, server, "--input", path, "--output", "csv", stdin=stdin)
        assert result.returncode == 0, (name, result.stderr)
        header, *rows = list(csv.reader(io.StringIO(result.stdout)))
        assert header == HEADER, name
        answers[name] = [[int(r[0]), *map(float, r[1:])] for r in rows]
        assert "iris_onnx version 1, request id" in result.stderr
    first = answers.pop("rows.json")
    assert len(first) == 3
    for name, rows in answers.items():
        assert [r[0] for r in rows] == [r[0] for r in first], name
        np.testing.assert_allclose([r[1:] for r in rows], [r[1:] for r in first], rtol=1e-6)


def test_output_formats(cli: Callable[..., Ran], server: RunningServer) -> None:
    rows = json.dumps(X)
    plain = predict(cli, server, "--input", "-", stdin=rows)
    assert plain.returncode == 0, plain.stderr
    lines = plain.stdout.splitlines()
    assert lines[0].split() == HEADER and len(lines) == 4
    assert "│" not in plain.stdout, "plain text when stdout is not a terminal"
    doc = json.loads(predict(cli, server, "--input", "-", "--output", "json", stdin=rows).stdout)
    assert doc["model_name"] == "iris_onnx" and doc["model_version"] == "1"
    assert len(doc["id"]) == 32
    label, probabilities = doc["outputs"]
    assert (label["name"], label["datatype"], label["shape"]) == ("label", "INT64", [3])
    assert probabilities["shape"] == [3, 3] and len(probabilities["data"][0]) == 3
    env = {"MODELSERVE_URL": server.url, "FORCE_COLOR": "1", "COLUMNS": "120"}
    rich = run_cli(["predict", "iris_onnx", "--input", "-"], env, stdin=rows)
    assert rich.returncode == 0 and "┃" in rich.stdout and "probabilities[2]" in rich.stdout
    assert "request id" in rich.stdout, "the caption goes under a rich table"


def test_every_flag_from_the_environment_and_grpc(
    cli: Callable[..., Ran], server: RunningServer, tmp_path: Path
) -> None:
    (tmp_path / "x.json").write_text(json.dumps(X[:1]))
    env = {
        "MODELSERVE_URL": f"grpc://{server.grpc_url}",
        "MODELSERVE_GRPC": "true",
        "MODELSERVE_INPUT": str(tmp_path / "x.json"),
        "MODELSERVE_OUTPUT": "json",
        "MODELSERVE_OUTPUTS": "label",
        "MODELSERVE_MODEL_VERSION": "1",
        "MODELSERVE_REQUEST_ID": "from-the-environment",
        "MODELSERVE_TIMEOUT": "30",
        "MODELSERVE_RETRIES": "1",
    }
    result = cli(["predict", "iris_onnx"], env)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["id"] == "from-the-environment"
    assert [o["name"] for o in doc["outputs"]] == ["label"]
    flag_wins = cli(["predict", "iris_onnx", "--output", "csv"], env)
    assert flag_wins.stdout.splitlines()[0] == "label", "a flag wins over its variable"


def test_failures_are_one_line(
    cli: Callable[..., Ran], server: RunningServer, tmp_path: Path
) -> None:
    rows = json.dumps(X)
    env = {"MODELSERVE_URL": server.url}
    unknown = run_cli(["predict", "nope", "--input", "-"], env, stdin=rows)
    # the exit code of the process itself
    one_line_error(unknown, 1, "Request for unknown model: 'nope' is not found")
    missing = predict(cli, server, "--input", str(tmp_path / "none.csv"))
    one_line_error(missing, 2, "no such file")
    one_line_error(predict(cli, server, stdin=rows), 2, "--input")
    bad_env = predict(cli, server, "--input", "-", stdin=rows, MODELSERVE_TIMEOUT="soon")
    one_line_error(bad_env, 2, "MODELSERVE_TIMEOUT: 'soon'")
    narrow = predict(cli, server, "--input", "-", stdin="a,b,c\n1,2,3\n")
    one_line_error(narrow, 2, "takes 4 features")
    broken = predict(cli, server, "--input", "-", stdin="[[1, 2", MODELSERVE_OUTPUT="json")
    one_line_error(broken, 2, "not valid JSON")
    refused = cli(
        ["predict", "iris_onnx", "--input", "-", "--url", "127.0.0.1:9", "--retries", "0"],
        stdin=rows,
    )
    one_line_error(refused, 1, "cannot connect to http://127.0.0.1:9")
    not_monitored = cli(["monitor", "iris_onnx", "--url", server.url])
    one_line_error(not_monitored, 1, "model 'iris_onnx' is not monitored")


def test_models_commands(cli: Callable[..., Ran], explicit: RunningServer, tmp_path: Path) -> None:
    url = {"MODELSERVE_URL": explicit.url}
    listing = cli(["models", "list"], url)
    assert listing.returncode == 0, listing.stderr
    states = {line.split()[0]: line.split()[-1] for line in listing.stdout.splitlines()[1:]}
    assert states["iris_onnx"] == "READY"
    metadata = json.loads(cli(["models", "metadata", "iris_onnx", "--output", "json"], url).stdout)
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    (tmp_path / "small.yaml").write_text("max_batch_size: 2\n")
    loaded = cli(
        ["models", "load", "iris_sklearn", "--model-config", str(tmp_path / "small.yaml")], url
    )
    assert loaded.returncode == 0 and "loaded" in loaded.stdout, loaded.stderr
    too_many = cli(["predict", "iris_sklearn", "--input", "-"], url, stdin=json.dumps(X))
    one_line_error(too_many, 2, "batch")
    assert cli(["models", "unload", "iris_sklearn"], url).returncode == 0
    listing = cli(["models", "list", "--ready", "--output", "csv"], url)
    assert "iris_sklearn" not in listing.stdout and "iris_onnx" in listing.stdout


MONITORING = {
    "model": "iris_onnx",
    "versions": {
        "1": {
            "predictions": 500,
            "labelled": 480,
            "label_coverage": 0.96,
            "metrics": {"all": {"accuracy": 0.95, "f1_macro": 0.94}, "1h": {"accuracy": 0.9}},
            "drift": {
                "drifted": False,
                "window_rows": 500,
                "features": {
                    "input[0]": {"method": "ks", "value": 0.04, "threshold": 0.11,
                                 "drifted": False, "psi": 0.02},
                },
            },
        }
    },
}  # fmt: skip
EXPERIMENT = {
    "state": "running",
    "weights": {"1": 90, "2": 10},
    "step": 1,
    "history": [{"time": "2026-01-01T00:00:00Z", "verdict": "promote", "reason": "ok",
                 "figures": {}}],
    "arms": {"1": {"requests": 900, "errors": 1, "p99_ms": 4.5, "accuracy": 0.95},
             "2": {"requests": 100, "errors": 0, "p99_ms": 4.1, "accuracy": 0.96}},
}  # fmt: skip


def test_monitor_labels_and_experiment_commands(cli: Callable[..., Ran], tmp_path: Path) -> None:
    """Against a recording HTTP server answering the documents of the monitoring and
    experiment issues: the requests the commands send and the tables they print."""
    with recording_server() as rec:
        rec.answer("/v2/models/iris_onnx/monitoring", 200, MONITORING)
        rec.answer("/v2/models/iris_onnx/labels", 200, {"accepted": 2, "unknown": 1})
        rec.answer("/v2/models/iris_onnx/experiment", 200, EXPERIMENT)
        env = {"MODELSERVE_URL": rec.url, "MODELSERVE_TOKEN": "a-client-token-0123456789"}
        monitor = cli(["monitor", "iris_onnx"], env)
        assert monitor.returncode == 0, monitor.stderr
        lines = monitor.stdout.splitlines()
        assert lines[1].split() == [
            "version", "predictions", "labelled", "label_coverage", "accuracy", "f1_macro",
            "drifted",
        ]  # fmt: skip
        assert lines[2].split() == ["1", "500", "480", "0.96", "0.95", "0.94", "False"]
        assert any(line.split()[:3] == ["1", "input[0]", "ks"] for line in lines)
        (tmp_path / "labels.csv").write_text("id,label\nr1,0\nr2,2\nr3,1\n")
        sent = cli(["labels", "send", "iris_onnx", str(tmp_path / "labels.csv")], env)
        assert sent.stdout.splitlines()[1].split() == ["iris_onnx", "3", "2", "1"], sent.stderr
        (tmp_path / "model.yaml").write_text(
            "max_batch_size: 8\nexperiment:\n  candidates: [{version: '1', weight: 90}, "
            "{version: '2', weight: 10}]\n"
        )
        start = cli(
            ["experiment", "start", "iris_onnx", "--file", str(tmp_path / "model.yaml")], env
        )
        assert start.returncode == 0 and "experiment running, step 1" in start.stdout
        for action in ("status", "promote", "rollback", "stop"):
            done = cli(["experiment", action, "iris_onnx", "--output", "json"], env)
            assert json.loads(done.stdout) == EXPERIMENT, done.stderr
    (sent_labels,) = [s for s in rec.seen if s.path.endswith("/labels")]
    assert sent_labels.json() == {
        "labels": [{"id": "r1", "label": 0}, {"id": "r2", "label": 2}, {"id": "r3", "label": 1}]
    }
    assert sent_labels.headers["authorization"] == "Bearer a-client-token-0123456789"
    experiment_calls = [(s.method, s.body and s.json()) for s in rec.seen if "experiment" in s.path]
    assert experiment_calls == [
        ("PUT", {"candidates": [{"version": "1", "weight": 90}, {"version": "2", "weight": 10}]}),
        ("GET", b""),
        ("PUT", {"action": "promote"}),
        ("PUT", {"action": "rollback"}),
        ("DELETE", b""),
    ]
