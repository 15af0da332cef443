"""Traffic experiments end to end (docs/experiments.md): real servers on loopback, real HTTP
clients and the modelserve command, python models with one version per behaviour, a real
SQLite store in a temp state directory."""

from __future__ import annotations

import json
import random
import re
import signal
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from modelserve.config.settings import TokenConfig
from modelserve.protocol import grpc_service_pb2 as pb
from modelserve.security.auth import hash_token
from tests.harness import CliProcess, Servers, run_cli, write_python_model

MODEL = """
import numpy as np

class Model:
    def predict(self, inputs):
        x = inputs["x"]
        return {"label": (x[:, 0] > 0).astype(np.int64)}
"""

CONFIG: dict[str, Any] = {
    "max_batch_size": 8,
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}],
    "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]}],
    "version_policy": {"all": True},
    "default_version": "1",
}


def body(value: float = 1.0, **parameters: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [value]}]
    }
    if parameters:
        document["parameters"] = parameters
    return document


def repository(
    tmp_path: Path,
    versions: tuple[int, ...] = (1, 2, 3),
    version_sources: dict[int, str] | None = None,
    **extra: Any,
) -> Path:
    """Model m with ``versions``, running MODEL but where ``version_sources`` says; CONFIG
    plus ``extra``."""
    repo = tmp_path / "repo"
    write_python_model(
        repo,
        "m",
        MODEL,
        {**CONFIG, **extra},
        versions=versions,
        version_sources=version_sources,
    )
    return repo


def versions_of(client: httpx.Client, count: int, **headers: str) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(count):
        reply = client.post("/v2/models/m/infer", json=body(), headers=headers)
        assert reply.status_code == 200, reply.text
        version = reply.json()["model_version"]
        assert reply.headers["x-modelserve-route"] == f"m:{version}"
        seen[version] += 1
    return seen


def test_a_split_lands_within_two_points_and_a_named_version_bypasses_it(
    tmp_path: Path, serve: Servers
) -> None:
    experiment = {"candidates": [{"version": "1", "weight": 90}, {"version": "2", "weight": 10}]}
    running = serve(repository(tmp_path, experiment=experiment), state_dir=tmp_path / "state")
    with httpx.Client(base_url=running.http, timeout=30) as client:
        seen = versions_of(client, 4_000)
        assert set(seen) == {"1", "2"}
        assert abs(seen["2"] / 4_000 - 0.10) <= 0.02, seen
        named = client.post("/v2/models/m/versions/3/infer", json=body())
        assert named.json()["model_version"] == "3"
        assert named.headers["x-modelserve-route"] == "m:3"
        status = client.get("/v2/models/m/experiment").json()
    assert status["state"] == "running" and status["weights"] == {"1": 90, "2": 10}
    assert status["origin"] == "config" and status["step"] is None
    arms = status["arms"]
    assert arms["1"]["requests"] + arms["2"]["requests"] == 4_000
    assert arms["2"]["requests"] == seen["2"] and arms["1"]["errors"] == 0
    assert arms["1"]["p99_ms"] > 0 and arms["1"]["accuracy"] is None
    metrics = httpx.get(f"{running.http}/metrics").text
    line = f'modelserve_experiment_requests_total{{arm="b",model="m",version="2"}} {seen["2"]}.0'
    assert line in metrics
    # over gRPC the answer's trailing metadata says which version answered, as REST's header
    with grpc.insecure_channel(running.grpc_url) as channel:
        infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        tensor = pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 1])
        tensor.contents.fp32_contents.append(1.0)
        routes: Counter[str] = Counter()
        for _ in range(200):
            answer, call = infer.with_call(
                pb.ModelInferRequest(model_name="m", inputs=[tensor]), timeout=30
            )
            route = dict(call.trailing_metadata())["x-modelserve-route"]
            assert route == f"m:{answer.model_version}"
            routes[route] += 1
    assert set(routes) == {"m:1", "m:2"}, routes


def test_sticky_keys_stay_and_new_weights_move_only_the_margin(
    tmp_path: Path, serve: Servers
) -> None:
    running = serve(repository(tmp_path), state_dir=tmp_path / "state")
    users = [f"user-{i}" for i in range(400)]

    def split(weight_2: int) -> dict[str, Any]:
        return {
            "candidates": [
                {"version": "1", "weight": 100 - weight_2},
                {"version": "2", "weight": weight_2},
            ],
            "sticky": {"header": "x-user-id"},
        }

    with httpx.Client(base_url=running.http, timeout=30) as client:
        started = client.put("/v2/models/m/experiment", json=split(10))
        assert started.status_code == 200, started.text
        assert started.json()["weights"] == {"1": 90, "2": 10}
        first = {}
        for user in users:
            seen = versions_of(client, 3, **{"x-user-id": user})
            assert len(seen) == 1, (user, seen)  # the same user, the same version
            first[user] = next(iter(seen))
        assert 0.05 < sum(v == "2" for v in first.values()) / len(users) < 0.16
        moved = client.put("/v2/models/m/experiment", json=split(20))
        assert moved.json()["id"] == started.json()["id"]
        second = {u: next(iter(versions_of(client, 1, **{"x-user-id": u}))) for u in users}
        changed = [(first[u], second[u]) for u in users if first[u] != second[u]]
        assert changed and set(changed) == {("1", "2")}  # only keys of the first arm moved
        # by parameter instead of header
        client.put(
            "/v2/models/m/experiment",
            json={**split(50), "sticky": {"parameter": "user_id"}},
        )
        for user in users[:20]:
            answers = {
                client.post("/v2/models/m/infer", json=body(user_id=user)).json()["model_version"]
                for _ in range(3)
            }
            assert len(answers) == 1
        stopped = client.delete("/v2/models/m/experiment").json()
        assert stopped["state"] == "stopped"
        assert set(versions_of(client, 50)) == {"1"}  # the default again
        history = [h["verdict"] for h in stopped["history"]]
        assert history == ["start", "start", "start", "stop"]
        for entry in stopped["history"]:  # epoch seconds, and the same instant in RFC 3339
            when = datetime.fromisoformat(entry["time_iso"])
            assert entry["time_iso"].endswith("Z") and when.utcoffset() == timedelta(0)
            assert abs(when.timestamp() - entry["time"]) < 0.001


@pytest.mark.parametrize(
    ("method", "document", "status", "message"),
    [
        ("PUT", {"candidates": [{"version": "1", "weight": 50}]}, 400, "sum to 100"),
        ("PUT", {"canary": {"version": "9"}}, 409, "version(s) 9"),
        ("PUT", {"action": "explode"}, 400, "'action'"),
        ("PUT", {"action": "promote"}, 404, "no traffic experiment"),
        ("GET", None, 404, "no traffic experiment"),
        ("POST", {}, 405, "GET, PUT or DELETE"),
    ],
)
def test_experiment_api_mistakes(
    tmp_path: Path,
    serve: Servers,
    method: str,
    document: Any,
    status: int,
    message: str,
) -> None:
    running = serve(repository(tmp_path, versions=(1, 2)), state_dir=tmp_path / "state")
    reply = httpx.request(
        method,
        f"{running.http}/v2/models/m/experiment",
        content=None if document is None else json.dumps(document),
    )
    assert reply.status_code == status and message in reply.json()["error"], reply.text
    assert httpx.get(f"{running.http}/v2/models/nope/experiment").status_code == 404


def test_the_experiment_needs_the_admin_scope(tmp_path: Path, serve: Servers) -> None:
    tokens = (
        TokenConfig(
            name="reader",
            token_sha256=hash_token("reader-token-0123456789"),
            scopes=("infer", "read"),
        ),
        TokenConfig(
            name="admin", token_sha256=hash_token("admin-token-0123456789"), scopes=("admin",)
        ),
    )
    running = serve(
        repository(tmp_path, versions=(1, 2)),
        state_dir=tmp_path / "state",
        auth_tokens=tokens,
    )
    url = f"{running.http}/v2/models/m/experiment"
    split = {"candidates": [{"version": "1", "weight": 50}, {"version": "2", "weight": 50}]}
    reader = {"authorization": "Bearer reader-token-0123456789"}
    admin = {"authorization": "Bearer admin-token-0123456789"}
    assert httpx.put(url, json=split, headers=reader).status_code == 403
    assert httpx.get(url, headers=reader).status_code == 403
    assert httpx.put(url, json=split, headers=admin).status_code == 200
    assert httpx.get(url, headers=admin).json()["state"] == "running"


def test_the_cli_drives_an_experiment_that_survives_a_restart(
    tmp_path: Path, serve: Servers
) -> None:
    repo = repository(tmp_path, versions=(1, 2))
    state = tmp_path / "state"
    running = serve(repo, state_dir=state)
    spec = tmp_path / "experiment.yaml"
    spec.write_text(
        "experiment:\n  candidates: [{version: '1', weight: 25}, {version: '2', weight: 75}]\n"
    )
    env = {"MODELSERVE_URL": running.http}
    started = run_cli(["experiment", "start", "m", "--file", str(spec)], env)
    assert started.returncode == 0, started.stderr
    assert "experiment running" in started.stdout
    status = run_cli(["experiment", "status", "m", "--output", "json"], env)
    assert json.loads(status.stdout)["weights"] == {"1": 25, "2": 75}
    refused = run_cli(["experiment", "promote", "m"], env)
    assert refused.returncode != 0 and "applies to a canary" in refused.stderr
    assert "Traceback" not in refused.stderr
    running.stop()
    again = serve(repo, state_dir=state)
    with httpx.Client(base_url=again.http, timeout=30) as client:
        seen = versions_of(client, 400)
    assert abs(seen["2"] / 400 - 0.75) < 0.1  # the stored split, after a restart
    stopped = run_cli(["experiment", "stop", "m"], {"MODELSERVE_URL": again.http})
    assert stopped.returncode == 0 and "experiment stopped" in stopped.stdout, stopped.stderr
    # the decisions' times in RFC 3339, not seconds since the epoch
    decisions = run_cli(["experiment", "status", "m"], {"MODELSERVE_URL": again.http})
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\s+stop\s", decisions.stdout), (
        decisions.stdout
    )


# ---- canaries ------------------------------------------------------------------------------

FAILING = """
import numpy as np

class Model:
    def __init__(self):
        self.calls = 0

    def predict(self, inputs):
        self.calls += 1
        if self.calls % 10 < 3:  # 30 % of the requests fail
            raise RuntimeError("version 3 is broken")
        x = inputs["x"]
        return {"label": (x[:, 0] > 0).astype(np.int64)}
"""


def wrong_near_zero(width: float) -> str:
    """A version that answers the sign of x, except within ``width`` of 0 where it is wrong."""
    return f"""
import numpy as np

class Model:
    def predict(self, inputs):
        x = inputs["x"][:, 0]
        right = x > 0
        return {{"label": np.where(np.abs(x) < {width}, ~right, right).astype(np.int64)}}
"""


WORSE = wrong_near_zero(0.5)


def canary_repository(tmp_path: Path, **extra: Any) -> Path:
    return repository(tmp_path, (1, 2, 3, 4), {3: FAILING, 4: WORSE}, **extra)


def canary(version: str, **settings: Any) -> dict[str, Any]:
    return {
        "canary": {
            "version": version,
            "steps": [20, 50, 100],
            "step_interval_s": 0.5,
            "min_requests": 150,
            **settings,
        }
    }


def load_until(
    base: str,
    done: Any,
    timeout: float = 90.0,
    clients: int = 4,
    fresh_connections: bool = False,
) -> Counter[str]:
    """Requests from ``clients`` threads until ``done(status)`` holds for the experiment's
    status; the answers by version and status code. ``fresh_connections``: a connection per
    request (--workers: the kernel spreads connections over the processes)."""
    import threading
    import time

    seen: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def send() -> None:
        rng = random.Random()
        limits = httpx.Limits(max_keepalive_connections=0) if fresh_connections else None
        with httpx.Client(base_url=base, timeout=30, limits=limits or httpx.Limits()) as client:
            while not stop.is_set():
                reply = client.post("/v2/models/m/infer", json=body(rng.uniform(-1, 1)))
                key = reply.json()["model_version"] if reply.status_code == 200 else "failed"
                with lock:
                    seen[key] += 1

    threads = [threading.Thread(target=send) for _ in range(clients)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            status = httpx.get(f"{base}/v2/models/m/experiment", timeout=30).json()
            if done(status):
                return seen
            assert time.monotonic() < deadline, (status, seen)
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def test_a_failing_canary_rolls_back_by_itself_within_its_first_step(
    tmp_path: Path, serve: Servers
) -> None:
    running = serve(canary_repository(tmp_path), state_dir=tmp_path / "state")
    reply = httpx.put(f"{running.http}/v2/models/m/experiment", json=canary("3"))
    assert reply.status_code == 200 and reply.json()["weights"] == {"1": 80, "3": 20}
    seen = load_until(running.http, lambda s: s["state"] != "running")
    status = httpx.get(f"{running.http}/v2/models/m/experiment").json()
    assert status["state"] == "rolled_back" and status["step"] == 1, status
    assert status["weights"] == {"1": 100, "3": 0}
    last = status["history"][-1]
    assert last["verdict"] == "rollback" and "error" in last["reason"]
    assert last["figures"]["candidate_errors"] > 0 and last["figures"]["look"] == 1
    total = sum(seen.values())
    # no more failures than the first step's weight allows (every candidate request failing)
    assert seen["failed"] <= 0.2 * total + 20, seen
    with httpx.Client(base_url=running.http, timeout=30) as client:
        assert set(versions_of(client, 50)) == {"1"}


def test_a_good_canary_reaches_100_and_stays_the_default_after_a_restart(
    tmp_path: Path, serve: Servers
) -> None:
    repo = canary_repository(tmp_path)
    state = tmp_path / "state"
    running = serve(repo, state_dir=state)
    # equal versions: a false alarm is possible at any alpha; make it one in a thousand
    reply = httpx.put(f"{running.http}/v2/models/m/experiment", json=canary("2", alpha=0.001))
    assert reply.status_code == 200
    load_until(running.http, lambda s: s["state"] != "running")
    status = httpx.get(f"{running.http}/v2/models/m/experiment").json()
    assert status["state"] == "promoted", status
    verdicts = [h["verdict"] for h in status["history"]]
    assert verdicts[0] == "start" and verdicts.count("promote") == 2
    assert "rollback" not in verdicts
    assert status["weights"] == {"1": 0, "2": 100}
    running.stop()
    again = serve(repo, state_dir=state)  # model.yaml still says default_version 1
    with httpx.Client(base_url=again.http, timeout=30) as client:
        assert set(versions_of(client, 20)) == {"2"}
        assert client.get("/v2/models/m/experiment").json()["state"] == "promoted"


def test_a_canary_answering_worse_rolls_back_on_accuracy(tmp_path: Path, serve: Servers) -> None:
    import time

    repo = canary_repository(tmp_path, monitoring={"sample_rate": 1.0})
    running = serve(repo, state_dir=tmp_path / "state")
    # the worse version does more arithmetic, so it is measurably slower too: latency is not
    # what this test is about
    checks = {"max_accuracy_drop": 0.05, "min_labels": 100, "max_latency_increase": None}
    spec = canary("4", steps=[50, 100], min_requests=100, checks=checks)
    assert httpx.put(f"{running.http}/v2/models/m/experiment", json=spec).status_code == 200
    rng = random.Random(7)
    deadline = time.monotonic() + 90
    with httpx.Client(base_url=running.http, timeout=30) as client:
        batch = 0
        while client.get("/v2/models/m/experiment").json()["state"] == "running":
            assert time.monotonic() < deadline
            labels = []
            for i in range(100):
                x = rng.uniform(-1, 1)
                ident = f"r{batch}-{i}"
                document = {**body(x), "id": ident}
                assert client.post("/v2/models/m/infer", json=document).status_code == 200
                labels.append({"id": ident, "label": int(x > 0)})
            accepted = client.post("/v2/models/m/labels", json={"labels": labels}).json()
            assert accepted["accepted"] == 100
            batch += 1
        status = client.get("/v2/models/m/experiment").json()
    assert status["state"] == "rolled_back", status
    last = status["history"][-1]
    assert last["verdict"] == "rollback" and "accuracy" in last["reason"], last
    assert status["weights"] == {"1": 100, "4": 0}


def test_workers_route_by_the_same_weights_at_the_same_step(tmp_path: Path) -> None:
    """--workers 2: the canary's record is in the store both processes poll; each step's
    verdict adds up the tallies of both, each having routed that step's requests."""
    import time

    repo = canary_repository(tmp_path)
    args = [
        "serve", str(repo), "--http-port", "0", "--grpc-port", "0", "--workers", "2",
        "--state-dir", str(tmp_path / "state"),
    ]  # fmt: skip
    with CliProcess(args) as cli:
        cli.wait_for("server ready", timeout=90, count=2)
        port = int(cli.wait_for(r"HTTP port (\d+)").group(1))
        base = f"http://127.0.0.1:{port}"
        spec = canary("2", min_requests=100, step_interval_s=1.0, alpha=0.001)
        assert httpx.put(f"{base}/v2/models/m/experiment", json=spec).status_code == 200
        seen = load_until(base, lambda s: s["state"] != "running", fresh_connections=True)
        assert seen["1"] and seen["2"] and not seen["failed"], seen
        views: dict[str, tuple[Any, ...]] = {}
        deadline = time.monotonic() + 60
        while len(views) < 2:  # a new connection each time: the kernel spreads them
            assert time.monotonic() < deadline, views
            status = httpx.get(f"{base}/v2/models/m/experiment").json()
            process = status["process"]
            weights = str(status["weights"])
            views[process["worker"]] = (process["revision"], status["state"], weights)
        assert len(set(views.values())) == 1, views  # both at the same revision and weights
        status = httpx.get(f"{base}/v2/models/m/experiment").json()
        assert status["state"] == "promoted", status["history"]
        promotions = [h for h in status["history"] if h["verdict"] == "promote"]
        assert [p["figures"]["weight"] for p in promotions] == [20, 50]
        for promotion in promotions:  # both processes routed requests to both arms at each step
            figures = promotion["figures"]
            assert figures["candidate_processes"] == 2 and figures["baseline_processes"] == 2
        cli.signal(signal.SIGTERM)
        assert cli.wait(60) == 0


# ---- shadow traffic ------------------------------------------------------------------------

SLOW_AND_FAILING = """
import time
import numpy as np

class Model:
    def __init__(self):
        self.calls = 0

    def predict(self, inputs):
        self.calls += 1
        time.sleep(0.05)
        if self.calls % 10 < 3:
            raise RuntimeError("the shadow is broken")
        return {"label": np.ones(len(inputs["x"]), dtype=np.int64)}
"""

DIFFERENT = wrong_near_zero(0.25)


def shadow_repository(tmp_path: Path, **extra: Any) -> Path:
    return repository(tmp_path, (1, 5, 6), {5: DIFFERENT, 6: SLOW_AND_FAILING}, **extra)


def inputs_grid(count: int) -> list[float]:
    """``count`` points evenly over (-1, 1): a quarter of them within 0.25 of 0."""
    return [-1 + (2 * i + 1) / count for i in range(count)]


def wait_for_shadow(base: str, done: Any) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + 60
    while True:
        status = httpx.get(f"{base}/v2/models/m/experiment").json()
        if status["shadow"] is not None and done(status["shadow"]):
            return dict(status["shadow"])
        assert time.monotonic() < deadline, status
        time.sleep(0.1)


def test_a_shadow_never_changes_an_answer_and_its_agreement_is_right(
    tmp_path: Path, serve: Servers
) -> None:
    running = serve(shadow_repository(tmp_path), state_dir=tmp_path / "state")
    url = f"{running.http}/v2/models/m/experiment"
    grid = inputs_grid(200)
    with httpx.Client(base_url=running.http, timeout=30) as client:
        assert client.put(url, json={"mirror": {"version": "6"}}).status_code == 200
        for x in grid:  # a slow, failing shadow: every answer is the primary's, all 200
            reply = client.post("/v2/models/m/infer", json=body(x))
            assert reply.status_code == 200 and reply.json()["model_version"] == "1"
            assert reply.json()["outputs"][0]["data"] == [int(x > 0)]
        shadow = wait_for_shadow(
            running.http, lambda s: s["mirrored"] + s["failed"] + s["dropped"] == len(grid)
        )
        assert shadow["version"] == "6" and shadow["failed"] > 0, shadow
        assert client.put(url, json={"mirror": {"version": "5"}}).status_code == 200
        for x in grid:
            reply = client.post("/v2/models/m/infer", json=body(x))
            assert reply.json()["model_version"] == "1"
        shadow = wait_for_shadow(
            running.http, lambda s: s["version"] == "5" and s["mirrored"] == len(grid)
        )
    assert shadow["agreement_ratio"] == pytest.approx(0.75, abs=0.01), shadow
    metrics = httpx.get(f"{running.http}/metrics").text
    assert 'modelserve_shadow_agreement_ratio{model="m",version="5"} 0.75' in metrics
    assert "modelserve_shadow_dropped_total" in metrics


def test_with_workers_the_shadow_figures_are_the_whole_servers(tmp_path: Path) -> None:
    """--workers 2: each process compares the copies it sent itself; whichever answers, the
    experiment API and the dashboard show the figures of both added up."""
    import time

    args = [
        "serve", str(shadow_repository(tmp_path)), "--http-port", "0", "--grpc-port", "0",
        "--workers", "2", "--state-dir", str(tmp_path / "state"), "--ui",
    ]  # fmt: skip
    with CliProcess(args) as cli:
        cli.wait_for("server ready", timeout=90, count=2)
        port = int(cli.wait_for(r"HTTP port (\d+)").group(1))
        base = f"http://127.0.0.1:{port}"
        url = f"{base}/v2/models/m/experiment"
        revision = httpx.put(url, json={"mirror": {"version": "5"}}).json()["process"]["revision"]
        routing: set[str] = set()  # both processes mirror before a request is sent
        deadline = time.monotonic() + 60
        while len(routing) < 2:  # a new connection each time: the kernel spreads them
            assert time.monotonic() < deadline, routing
            process = httpx.get(url).json()["process"]
            if process["revision"] >= revision:
                routing.add(process["worker"])
        grid = inputs_grid(200)
        for x in grid:
            reply = httpx.post(f"{base}/v2/models/m/infer", json=body(x))
            assert reply.json()["model_version"] == "1"
        views: dict[str, dict[str, Any]] = {}
        while len(views) < 2:
            assert time.monotonic() < deadline + 60, views
            status = httpx.get(url).json()
            if (status["shadow"] or {}).get("mirrored") == len(grid):
                views[status["process"]["worker"]] = status["shadow"]
        for shadow in views.values():
            assert shadow["version"] == "5" and shadow["rows"] == len(grid), shadow
            assert shadow["agreement_ratio"] == pytest.approx(0.75, abs=0.01), shadow
        for _ in range(10):
            shadow = httpx.get(f"{base}/ui/api/models/m").json()["shadow"]
            assert shadow["mirrored"] == len(grid), shadow
        cli.signal(signal.SIGTERM)
        assert cli.wait(60) == 0


def test_a_version_failing_its_gate_with_on_fail_shadow_is_mirrored(
    tmp_path: Path, serve: Servers
) -> None:
    validation = {
        "data": "holdout.csv",
        "label": "target",
        "metrics": {"accuracy": {"min": 0.9}},
        "on_fail": "shadow",
    }
    repo = tmp_path / "repo"
    folder = write_python_model(
        repo,
        "m",
        MODEL,
        {**CONFIG, "default_version": None, "validation": validation, "monitoring": {}},
        versions=(1, 5),
        version_sources={5: DIFFERENT},
    )
    rows = "\n".join(f"{x},{int(x > 0)}" for x in inputs_grid(100))
    (folder / "holdout.csv").write_text(f"x,target\n{rows}\n")
    running = serve(repo, state_dir=tmp_path / "state")
    index = httpx.post(f"{running.http}/v2/repository/index").json()
    (held,) = [r for r in index if r["version"] == "5"]
    assert held["state"] == "UNAVAILABLE" and "mirrored as a shadow" in held["reason"], held
    grid = inputs_grid(100)
    with httpx.Client(base_url=running.http, timeout=30) as client:
        for x in grid:
            reply = client.post("/v2/models/m/infer", json=body(x))
            assert reply.status_code == 200 and reply.json()["model_version"] == "1"
        refused = client.post("/v2/models/m/versions/5/infer", json=body(0.1))
        assert refused.status_code == 503
        import time

        deadline = time.monotonic() + 60
        while True:
            report = client.get("/v2/models/m/monitoring").json()
            shadow = report.get("shadow") or {}
            if shadow.get("mirrored") == len(grid):
                break
            assert time.monotonic() < deadline, report
            time.sleep(0.1)
    assert shadow["version"] == "5" and shadow["agreement_ratio"] == pytest.approx(0.75, abs=0.02)
