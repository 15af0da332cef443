"""Model monitoring end to end: real servers (in-process and the real command line with
--workers 2), real HTTP clients, the iris classifier with its training data as reference, a
real SQLite store in a temp state directory."""

from __future__ import annotations

import http.server
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest
import yaml

from tests.harness import CliProcess, Servers, run_cli
from tests.monitoring_helpers import (
    in_distribution,
    monitored_repo,
    monitoring,
    predict_all,
    send_labels,
)
from tests.payload_helpers import payload_metric, read_lines, wait_for
from tests.postgres_helpers import postgres_server


def test_labels_give_the_offline_accuracy_and_survive_a_restart(
    model_repo: Path, tmp_path: Path, serve: Servers
) -> None:
    config = {"reference": "reference.csv", "window": {"rows": 500}}
    repo = monitored_repo(model_repo, tmp_path / "repo", config)
    state = tmp_path / "state"
    running = serve(repo, state_dir=state)
    rows, truth = in_distribution(500)
    predicted = predict_all(running.http, "iris", rows, "req")
    offline = sum(int(p == t) for p, t in zip(predicted, truth, strict=True)) / len(truth)
    assert 0.5 < offline < 1.0  # a real classifier: right mostly, not always
    labels = [{"id": f"req-{i}", "label": int(t)} for i, t in enumerate(truth[:480])]
    labels += [{"id": "nobody-1", "label": 0}, {"id": "nobody-2", "label": 1}]
    assert send_labels(running.http, "iris", labels) == {"accepted": 480, "unknown": 2}
    # the rest one at a time, in the single-label form
    for i in range(480, 500):
        reply = httpx.post(
            f"{running.http}/v2/models/iris/labels", json={"id": f"req-{i}", "label": int(truth[i])}
        )
        assert reply.json() == {"accepted": 1, "unknown": 0}
    report = monitoring(running.http, "iris")
    version = report["versions"]["1"]
    assert report["model"] == "iris"
    assert version["predictions"] == 500 and version["labelled"] == 500
    assert version["label_coverage"] == 1.0 and version["task"] == "classification"
    assert set(version["metrics"]) == {"1h", "24h", "7d", "all"}
    figures = version["metrics"]["all"]
    assert abs(figures["accuracy"] - offline) < 1e-6
    assert figures["labelled"] == 500
    assert 0 < figures["f1_macro"] <= 1 and 0 < figures["precision_macro"] <= 1
    assert version["metrics"]["1h"]["accuracy"] == figures["accuracy"]
    labels_ = {"model": "iris", "version": "1", "window": "all"}

    def gauge_is_offline() -> bool:
        # the gauges follow labels half a second later (one recomputation for a burst of posts)
        accuracy = payload_metric(running.http, "modelserve_model_accuracy", **labels_)
        return accuracy is not None and abs(accuracy - offline) < 1e-6

    wait_for(gauge_is_offline)
    coverage = payload_metric(running.http, "modelserve_label_coverage", model="iris", version="1")
    assert coverage == 1.0
    # the first window (500 rows) was in distribution
    drift = version["drift"]
    assert drift["window_rows"] == 500 and drift["drifted"] is False
    assert set(drift["features"]) == {f"input[{j}]" for j in range(4)}
    for feature in drift["features"].values():
        assert feature["method"] == "ks" and feature["drifted"] is False
        assert 0 <= feature["value"] < feature["threshold"] and feature["psi"] >= 0
    # the next 500 have feature 2 shifted by +3: input[2] drifts, and only it
    shifted = in_distribution(500, seed=3)[0]
    shifted[:, 2] += 3
    predict_all(running.http, "iris", shifted, "shifted")
    drift = monitoring(running.http, "iris")["versions"]["1"]["drift"]
    assert drift["window_rows"] == 500
    assert {name for name, f in drift["features"].items() if f["drifted"]} == {"input[2]"}
    assert drift["features"]["input[2]"]["out_of_range_share"] > 0.3
    gauge = payload_metric(
        running.http, "modelserve_feature_drift", model="iris", version="1", feature="input[2]",
        method="ks",
    )  # fmt: skip
    assert gauge is not None and abs(gauge - drift["features"]["input[2]"]["value"]) < 1e-6
    running.stop()

    again = serve(repo, state_dir=state)
    after = monitoring(again.http, "iris")["versions"]["1"]
    assert after["predictions"] == 1000 and after["labelled"] == 500
    assert after["metrics"]["all"] == figures
    assert after["drift"]["features"] == drift["features"]


def test_bad_labels_are_clear_errors(model_repo: Path, tmp_path: Path, serve: Servers) -> None:
    repo = monitored_repo(model_repo, tmp_path / "repo", {})
    running = serve(repo, state_dir=tmp_path / "state")
    url = f"{running.http}/v2/models/iris/labels"
    for body, status in [
        (b"not json", 400),
        (b"[1, 2]", 400),
        (b'{"labels": {"id": "a"}}', 400),
        (b'{"labels": [{"id": "a"}]}', 400),
        (b'{"labels": [{"id": 3, "label": 1}]}', 400),
        (b'{"labels": [{"id": "a", "label": {"x": 1}}]}', 400),
    ]:
        reply = httpx.post(url, content=body)
        assert reply.status_code == status and "error" in reply.json(), body
    assert httpx.get(url).status_code == 405
    assert httpx.post(f"{running.http}/v2/models/nope/labels", json={}).status_code == 404
    assert httpx.get(f"{running.http}/v2/models/nope/monitoring").status_code == 404
    # no model predicted anything yet: an empty version entry, nothing labelled
    version = monitoring(running.http, "iris")["versions"]["1"]
    assert version["predictions"] == 0 and version["metrics"]["all"] == {"labelled": 0}


def test_unmonitored_model_says_so(model_repo: Path, serve: Servers) -> None:
    running = serve(model_repo)
    reply = httpx.get(f"{running.http}/v2/models/iris_onnx/monitoring")
    assert reply.status_code == 409 and "not monitored" in reply.json()["error"]
    labels = httpx.post(f"{running.http}/v2/models/iris_onnx/labels", json={"id": "a", "label": 1})
    assert labels.status_code == 409 and "not monitored" in labels.json()["error"]
    assert running.server is not None and not running.server.events.active


def test_a_drift_window_closes_at_exactly_its_rows(
    model_repo: Path, tmp_path: Path, serve: Servers
) -> None:
    """Requests of 30 rows into windows of 100: the fourth crosses the boundary, so its first
    10 rows close the window and its other 20 open the next one; 80 rows more close that one
    at 100 too (never 120, however the batch of events or of rows falls)."""
    window = {"rows": 100, "min_rows": 10, "seconds": 3600}
    repo = monitored_repo(model_repo, tmp_path / "repo", {"reference": "reference.csv",
                                                          "window": window})  # fmt: skip
    running = serve(repo, state_dir=tmp_path / "state")
    rows = in_distribution(200)[0]

    def send(batch: np.ndarray) -> None:
        body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(batch.shape),
                            "data": batch.ravel().tolist()}]}  # fmt: skip
        reply = httpx.post(f"{running.http}/v2/models/iris/infer", json=body)
        assert reply.status_code == 200, reply.text

    for start in range(0, 120, 30):
        send(rows[start : start + 30])
    drift = monitoring(running.http, "iris")["versions"]["1"]["drift"]
    assert (drift["window"], drift["window_rows"]) == ("open", 20)  # the rest of the 4th
    send(rows[120:160])
    send(rows[160:200])
    drift = monitoring(running.http, "iris")["versions"]["1"]["drift"]
    assert (drift["window"], drift["window_rows"]) == ("closed", 100)


@pytest.mark.parametrize(
    ("store", "reason"),
    [
        ("{tmp}/a-file/monitoring.db", "File exists"),
        ("redis://127.0.0.1:6379/0", "'redis://' is not a store"),
        ("postgresql://user:secret@127.0.0.1:1/none", "127.0.0.1"),
    ],
    ids=["bad-path", "redis-url", "unreachable-postgres"],
)
def test_a_store_that_cannot_open_is_an_error_with_its_reason(
    model_repo: Path,
    tmp_path: Path,
    serve: Servers,
    caplog: pytest.LogCaptureFixture,
    store: str,
    reason: str,
) -> None:
    """Not 'not monitored': the API answers 503 with why, the dashboard says it, the log says
    it once at WARNING (not again when models load again), and no password is shown."""
    (tmp_path / "a-file").write_text("a file where the store's folder should be")
    repo = monitored_repo(model_repo, tmp_path / "repo", {})
    caplog.set_level(logging.INFO, logger="modelserve.monitoring")
    running = serve(repo, store=store.format(tmp=tmp_path), ui=True, model_control_mode="explicit")
    load = f"{running.http}/v2/repository/models/iris/load"
    assert httpx.post(load).status_code == 200
    reply = httpx.get(f"{running.http}/v2/models/iris/monitoring")
    assert reply.status_code == 503, reply.text
    error = reply.json()["error"]
    assert error.startswith("the monitoring store (") and "cannot open: " in error
    assert reason in error and "secret" not in error and "not monitored" not in error
    labels = httpx.post(f"{running.http}/v2/models/iris/labels", json={"id": "a", "label": 1})
    assert labels.status_code == 503 and labels.json()["error"] == error
    ui = httpx.get(f"{running.http}/ui/api/models/iris")
    assert ui.json()["monitoring"] == {"error": error}, ui.text
    page = httpx.get(f"{running.http}/ui/models/iris").text
    assert "Monitoring error: the monitoring store (" in page and "Not monitored" not in page
    assert httpx.post(load).status_code == 200  # the store is tried again, not logged again
    assert httpx.get(f"{running.http}/v2/models/iris/monitoring").json()["error"] == error
    said = [r for r in caplog.records if "cannot open" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.WARNING], said
    # a model without monitoring is still 'not monitored', not the store's error
    unmonitored = httpx.get(f"{running.http}/v2/models/iris_onnx/monitoring")
    assert unmonitored.status_code == 404 or "not monitored" in unmonitored.json()["error"]


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_workers_share_the_store(
    model_repo: Path, tmp_path: Path, engine: str, request: pytest.FixtureRequest
) -> None:
    repo = monitored_repo(model_repo, tmp_path / "repo", {})
    args = ["serve", str(repo), "--http-port", "0", "--grpc-port", "0", "--workers", "2"]
    args += ["--state-dir", str(tmp_path / "state")]
    if engine == "postgres":
        server: str = request.getfixturevalue("postgres")
        database = f"w_{uuid.uuid4().hex}"
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {database}")
        args += ["--store", server.rsplit("/", 1)[0] + f"/{database}"]
    with CliProcess(args) as cli:
        port = cli.wait_ready()
        base = f"http://127.0.0.1:{port}"
        rows, truth = in_distribution(200, seed=2)
        # a new connection per request: the kernel spreads them over both workers
        predicted = predict_all(base, "iris", rows, "w", fresh_connections=True)
        labels = [{"id": f"w-{i}", "label": int(t)} for i, t in enumerate(truth)]
        assert send_labels(base, "iris", labels) == {"accepted": 200, "unknown": 0}
        offline = sum(int(p == t) for p, t in zip(predicted, truth, strict=True)) / len(truth)
        reports = [monitoring(base, "iris")["versions"]["1"] for _ in range(6)]
        for version in reports:
            assert version["predictions"] == 200 and version["labelled"] == 200
            assert abs(version["metrics"]["all"]["accuracy"] - offline) < 1e-6
        cli.signal()
        assert cli.wait() == 0


def test_profile_command_feeds_drift_and_the_cli_sends_labels_and_monitors(
    model_repo: Path, tmp_path: Path, serve: Servers
) -> None:
    repo = monitored_repo(model_repo, tmp_path / "repo", {"window": {"rows": 200}})
    data = tmp_path / "train.csv"
    (repo / "iris" / "reference.csv").rename(data)
    result = run_cli(["profile", str(data), "--model-dir", str(repo / "iris")])
    assert result.returncode == 0, result.stderr
    assert "200 rows, 5 features" in result.stdout
    assert (repo / "iris" / "reference_profile.json").is_file()
    bad = run_cli(["profile", str(tmp_path / "nope.csv"), "--model-dir", str(repo)])
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no such file" in bad.stderr
    running = serve(repo, state_dir=tmp_path / "state")
    rows = in_distribution(200, seed=5)[0]
    rows[:, 0] -= 4
    predicted = predict_all(running.http, "iris", rows, "p")
    drift = monitoring(running.http, "iris")["versions"]["1"]["drift"]
    assert drift["window_rows"] == 200 and drift["window"] == "closed"
    assert {name for name, f in drift["features"].items() if f["drifted"]} == {"input[0]"}
    # the client's commands against this server: labels from a CSV file, then the tables
    truth = [predicted[i] if i % 4 else (predicted[i] + 1) % 3 for i in range(100)]
    lines = ["id,label", *(f"p-{i},{label}" for i, label in enumerate(truth)), "ghost,1"]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    env = {"MODELSERVE_URL": running.url}
    sent = run_cli(["labels", "send", "iris", str(tmp_path / "labels.csv")], env)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.splitlines()[-1].split() == ["iris", "101", "100", "1"]
    shown = run_cli(["monitor", "iris", "--output", "json"], env)
    assert shown.returncode == 0, shown.stderr
    version = json.loads(shown.stdout)["versions"]["1"]
    assert version["labelled"] == 100 and version["metrics"]["all"]["accuracy"] == 0.75
    table = run_cli(["monitor", "iris"], env)
    assert table.returncode == 0, table.stderr
    rows_ = [line.split() for line in table.stdout.splitlines()]
    header = next(r for r in rows_ if r[:2] == ["version", "predictions"])
    assert header.count("labelled") == 1 and "accuracy" in header
    first = next(r for r in rows_ if r[:1] == ["1"] and len(r) == len(header))
    assert dict(zip(header, first, strict=True))["accuracy"] == "0.75"
    assert any(r[:3] == ["1", "input[0]", "ks"] and r[-1] == "True" for r in rows_)
    not_monitored = run_cli(["monitor", "nope"], env)
    assert not_monitored.returncode == 1 and "nope" in not_monitored.stderr


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []
    failures_left = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        if _Hook.failures_left > 0:  # the first call fails: the alert must be retried
            _Hook.failures_left -= 1
            self.send_response(503)
        else:
            _Hook.received.append(json.loads(body))
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_alerts_reach_the_webhook_the_payload_log_and_the_metrics_once_per_change(
    model_repo: Path, tmp_path: Path, serve: Servers
) -> None:
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    _Hook.received, _Hook.failures_left = [], 1
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        alerts = {
            "min_accuracy": 0.9,
            "min_labels": 20,
            "webhook": f"http://127.0.0.1:{hook.server_address[1]}/hook",
        }
        config = {"reference": "reference.csv", "window": {"rows": 100}, "alerts": alerts}
        repo = monitored_repo(model_repo, tmp_path / "repo", config)
        model_yaml = repo / "iris" / "model.yaml"
        document = yaml.safe_load(model_yaml.read_text())
        document["logging"] = {"sinks": [{"type": "file", "path": "iris.jsonl", "linger_ms": 1}]}
        model_yaml.write_text(yaml.safe_dump(document))
        running = serve(repo, state_dir=tmp_path / "state", log_dir=tmp_path / "logs")
        rows = in_distribution(100, seed=4)[0]
        rows[:, 1] += 5
        rows[:, 3] -= 5
        predicted = predict_all(running.http, "iris", rows, "a")
        wrong = [{"id": f"a-{i}", "label": (p + 1) % 3} for i, p in enumerate(predicted[:50])]
        assert send_labels(running.http, "iris", wrong)["accepted"] == 50
        send_labels(running.http, "iris", wrong)  # the same state again: no new alert
        wait_for(lambda: len(_Hook.received) >= 2)
        kinds = sorted((a["kind"], a["state"]) for a in _Hook.received)
        assert kinds == [("accuracy", "raised"), ("drift", "raised")]
        accuracy = next(a for a in _Hook.received if a["kind"] == "accuracy")
        assert accuracy["model"] == "iris" and accuracy["version"] == "1"
        assert accuracy["value"] == 0.0 and accuracy["threshold"] == 0.9
        assert accuracy["window"] == "24h" and accuracy["labelled"] == 50
        drift = next(a for a in _Hook.received if a["kind"] == "drift")
        assert drift["features"] == ["input[1]", "input[3]"] and drift["threshold"] == 0.5
        for kind in ("accuracy", "drift"):
            labels_ = {"model": "iris", "version": "1", "kind": kind}
            assert payload_metric(running.http, "modelserve_alert_active", **labels_) == 1
        log = tmp_path / "logs" / "iris.jsonl"
        wait_for(lambda: sum(r["status"] == "alert" for r in read_lines(log)) == 2)
        records = [r for r in read_lines(log) if r["status"] == "alert"]
        assert {r["parameters"]["kind"] for r in records} == {"accuracy", "drift"}
        assert all(r["parameters"]["state"] == "raised" for r in records)
        # right labels for the rest bring the 24h accuracy back above 0.9: cleared, once
        right = [{"id": f"a-{i}", "label": p} for i, p in enumerate(predicted)]
        send_labels(running.http, "iris", right)
        wait_for(lambda: len(_Hook.received) == 3)
        assert (_Hook.received[2]["kind"], _Hook.received[2]["state"]) == ("accuracy", "cleared")
        labels_ = {"model": "iris", "version": "1", "kind": "accuracy"}
        assert payload_metric(running.http, "modelserve_alert_active", **labels_) == 0
    finally:
        hook.shutdown()
        hook.server_close()
