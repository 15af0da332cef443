"""Traffic experiments end to end (docs/experiments.md): real servers on loopback, real HTTP
clients and the modelserve command, python models with one version per behaviour, a real
SQLite store in a temp state directory."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelserve.config.settings import TokenConfig
from modelserve.security.auth import hash_token
from tests.harness import Servers, run_cli, write_python_model

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


def repository(tmp_path: Path, versions: tuple[int, ...] = (1, 2, 3), **extra: Any) -> Path:
    repo = tmp_path / "repo"
    write_python_model(repo, "m", MODEL, {**CONFIG, **extra}, versions=versions)
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
