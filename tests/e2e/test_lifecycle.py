"""Versions, the repository API, zero-downtime swaps (poll and load API), drain on unload."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from pathlib import Path

import httpx
import pytest

from modelserve.config.settings import Settings
from modelserve.server.compose import Server
from tests.conftest import RunningServer, Servers
from tests.harness import wait_for_running, write_python_model

VERSIONED = """
import time
import numpy as np
from pathlib import Path

class Versioned:
    def load(self, version_dir, parameters):
        marker = Path(version_dir) / "broken"
        if marker.exists():
            raise RuntimeError("this version is broken")
        self.version = float(Path(version_dir).name)
        self.release = Path(version_dir).parent / "release"
        gate = parameters.get("load_gate")
        while gate is not None and not Path(gate).exists():
            time.sleep(0.005)

    def predict(self, inputs):
        x = inputs["x"]
        if x[0, 0] < 0:  # held until the test creates the model folder's "release" file
            deadline = time.monotonic() + 60
            while not self.release.exists() and time.monotonic() < deadline:
                time.sleep(0.005)
        else:
            time.sleep(float(x[0, 0]))
        return {"version": np.full((x.shape[0], 1), self.version, dtype=np.float32)}
"""


def make_model(repo: Path, name: str, versions: list[int], **extra: object) -> Path:
    """The VERSIONED model with ``versions``; ``extra`` keys go into its model.yaml."""
    config = {
        "max_batch_size": 8,
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}],
        "outputs": [{"name": "version", "datatype": "FP32", "shape": [-1, 1]}],
        **extra,
    }
    return write_python_model(repo, name, VERSIONED, config, versions, entrypoint="Versioned")


def body(sleep: float = 0.0) -> dict[str, object]:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [sleep]}]}


def version_of(reply: httpx.Response) -> int:
    assert reply.status_code == 200, reply.text
    return int(reply.json()["outputs"][0]["data"][0])


class Load:
    """Continuous requests from several clients until stopped; records every answer."""

    def __init__(self, url: str, model: str, clients: int = 4) -> None:
        self.url, self.model, self.clients = url, model, clients
        self.statuses: list[int] = []
        self.versions: list[int] = []
        self.errors: list[str] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _client(self) -> None:
        async with httpx.AsyncClient(base_url=f"http://{self.url}", timeout=30) as client:
            while not self._stop.is_set():
                try:
                    reply = await client.post(f"/v2/models/{self.model}/infer", json=body(0.002))
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                    continue
                self.statuses.append(reply.status_code)
                if reply.status_code == 200:
                    self.versions.append(version_of(reply))

    def start(self) -> Load:
        self._tasks = [asyncio.ensure_future(self._client()) for _ in range(self.clients)]
        return self

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def wait_for_answers(self, more: int, timeout: float = 20) -> None:
        """Wait until ``more`` answers came after this call."""
        target = len(self.statuses) + more
        deadline = time.monotonic() + timeout
        while len(self.statuses) < target:
            assert time.monotonic() < deadline, f"fewer than {more} answers in {timeout} s"
            await asyncio.sleep(0.02)

    async def wait_for_version(self, version: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not self.versions or self.versions[-1] != version:
            assert time.monotonic() < deadline, f"never served version {version}"
            await asyncio.sleep(0.05)


def index(url: str) -> dict[tuple[str, str], dict[str, str]]:
    rows = httpx.post(f"http://{url}/v2/repository/index").json()
    return {(r["name"], r["version"]): r for r in rows}


@pytest.fixture
def explicit(tmp_path: Path, serve: Servers) -> tuple[RunningServer, Path]:
    make_model(tmp_path, "swap", [1])
    make_model(tmp_path, "slow", [1])
    make_model(tmp_path, "idle", [1])
    running = serve(tmp_path, model_control_mode="explicit", load_models=("swap", "slow"))
    return running, tmp_path


async def test_load_api_swaps_versions_under_load_without_a_failure(
    explicit: tuple[RunningServer, Path],
) -> None:
    server, repo = explicit
    not_loaded = index(server.url)[("idle", "")]
    assert not_loaded["state"] == "UNAVAILABLE" and not_loaded["reason"] == "not loaded"
    load = Load(server.url, "swap").start()
    await load.wait_for_version(1)
    (repo / "swap" / "2").mkdir()
    async with httpx.AsyncClient(base_url=f"http://{server.url}", timeout=30) as client:
        reply = await client.post("/v2/repository/models/swap/load")
        assert reply.status_code == 200, reply.text
    await load.wait_for_version(2)
    await load.wait_for_answers(20)  # the new version keeps answering under load
    await load.stop()
    assert load.errors == []
    assert set(load.statuses) == {200}, "no request failed during the swap"
    assert load.versions[-1] == 2
    rows = index(server.url)
    assert rows[("swap", "2")]["state"] == "READY"
    assert ("swap", "1") not in rows


async def test_corrupt_new_version_leaves_the_old_one_serving(
    explicit: tuple[RunningServer, Path],
) -> None:
    server, repo = explicit
    (repo / "swap" / "2").mkdir()
    (repo / "swap" / "2" / "broken").write_text("x")
    async with httpx.AsyncClient(base_url=f"http://{server.url}", timeout=30) as client:
        reply = await client.post("/v2/repository/models/swap/load")
        assert reply.status_code == 400, "the caller must learn that version 2 failed"
        error = reply.json()["error"]
        assert "version 2" in error and "broken" in error and "still serving version 1" in error
        assert str(repo) not in error
        assert version_of(await client.post("/v2/models/swap/infer", json=body())) == 1
    rows = index(server.url)
    assert rows[("swap", "2")]["state"] == "UNAVAILABLE"
    assert "broken" in rows[("swap", "2")]["reason"]
    assert rows[("swap", "1")]["state"] == "READY"
    # a config override that is invalid is the caller's mistake
    async with httpx.AsyncClient(base_url=f"http://{server.url}", timeout=30) as client:
        bad = await client.post(
            "/v2/repository/models/swap/load",
            json={"parameters": {"config": '{"max_batch_size": -1}'}},
        )
        assert bad.status_code == 400 and "max_batch_size" in bad.json()["error"]
        missing = await client.post("/v2/repository/models/nope/load")
        assert missing.status_code == 404
        traversal = await client.post("/v2/repository/models/..%2F..%2Fetc/load")
        assert traversal.status_code in (400, 404)


async def test_unload_drains_in_flight_requests(explicit: tuple[RunningServer, Path]) -> None:
    server, repo = explicit
    async with httpx.AsyncClient(base_url=f"http://{server.url}", timeout=30) as client:
        in_flight = [
            asyncio.ensure_future(client.post("/v2/models/slow/infer", json=body(-1)))
            for _ in range(3)
        ]  # held in the model (one running, two queued) until "release" exists
        await asyncio.to_thread(wait_for_running, server.http, "slow")
        unload = asyncio.ensure_future(client.post("/v2/repository/models/slow/unload"))
        deadline = time.monotonic() + 30
        while (state := index(server.url)[("slow", "1")]["state"]) != "UNLOADING":
            assert time.monotonic() < deadline, f"never UNLOADING (state {state})"
            await asyncio.sleep(0.02)
        refused = await client.post("/v2/models/slow/infer", json=body())
        assert refused.status_code == 503
        (repo / "slow" / "release").touch()
        results = await asyncio.gather(*in_flight)
        assert [r.status_code for r in results] == [200, 200, 200]
        assert (await unload).status_code == 200
        row = index(server.url)[("slow", "1")]
        assert row["state"] == "UNAVAILABLE" and row["reason"] == "unloaded"
        assert (await client.post("/v2/models/slow/infer", json=body())).status_code == 503
        # and it can come back
        assert (await client.post("/v2/repository/models/slow/load")).status_code == 200
        assert (await client.post("/v2/models/slow/infer", json=body())).status_code == 200


async def test_index_shows_loading_while_a_version_loads(
    explicit: tuple[RunningServer, Path],
) -> None:
    server, repo = explicit
    gate = repo / "loaded"
    make_model(repo, "idle", [1], parameters={"load_gate": str(gate)})  # loads once gate exists
    async with httpx.AsyncClient(base_url=server.http, timeout=30) as client:
        load = asyncio.ensure_future(client.post("/v2/repository/models/idle/load"))
        deadline = time.monotonic() + 10
        while ("idle", "1") not in (rows := index(server.url)):
            assert time.monotonic() < deadline, rows
            await asyncio.sleep(0.02)
        assert rows[("idle", "1")]["state"] == "LOADING"
        assert (await client.get("/v2/models/idle/ready")).status_code == 503
        gate.touch()
        assert (await load).status_code == 200
        assert (await client.get("/v2/models/idle/ready")).status_code == 200


async def test_versions_default_and_policy(tmp_path: Path, serve: Servers) -> None:
    make_model(tmp_path, "multi", [1, 2, 3], version_policy={"all": True}, default_version="2")
    running = serve(tmp_path)
    async with httpx.AsyncClient(base_url=running.http, timeout=30) as client:
        meta = (await client.get("/v2/models/multi")).json()
        assert meta["versions"] == ["1", "2", "3"]
        assert version_of(await client.post("/v2/models/multi/infer", json=body())) == 2
        for v in (1, 3):
            reply = await client.post(f"/v2/models/multi/versions/{v}/infer", json=body())
            assert version_of(reply) == v
        refused = await client.post("/v2/repository/models/multi/load")
        assert refused.status_code == 409, "load API needs explicit mode"


async def test_poll_mode_swaps_under_load_and_waits_for_stable_folders(
    tmp_path: Path, serve: Servers
) -> None:
    make_model(tmp_path, "polled", [1])
    running = serve(tmp_path, model_control_mode="poll", repository_poll_secs=0.2)
    load = Load(running.url, "polled").start()
    await load.wait_for_version(1)
    shutil.copytree(tmp_path / "polled" / "1", tmp_path / "polled" / "2")
    await load.wait_for_version(2)
    (tmp_path / "polled" / "3").mkdir()
    (tmp_path / "polled" / "3" / "broken").write_text("x")
    await asyncio.sleep(1.0)
    assert load.versions[-1] == 2, "a broken version 3 leaves version 2 serving"
    await load.stop()
    assert load.errors == [] and set(load.statuses) == {200}
    rows = index(running.url)
    assert rows[("polled", "3")]["state"] == "UNAVAILABLE"
    assert rows[("polled", "2")]["state"] == "READY"
    shutil.rmtree(tmp_path / "polled")
    deadline = time.monotonic() + 10
    while ("polled", "2") in index(running.url):
        assert time.monotonic() < deadline, "a removed model is unloaded"
        await asyncio.sleep(0.1)


async def test_warmup_runs_before_ready_and_failure_is_reported(
    tmp_path: Path, serve: Servers
) -> None:
    make_model(tmp_path, "warm", [1], warmup={"count": 2})
    make_model(tmp_path, "cold", [1], warmup={"count": 1, "sample_file": "missing.npz"})
    running = serve(tmp_path)
    rows = index(running.url)
    assert rows[("warm", "1")]["state"] == "READY"
    assert rows[("cold", "1")]["state"] == "UNAVAILABLE"
    assert "missing.npz" in rows[("cold", "1")]["reason"]


def test_grpc_repository_load_and_unload(explicit: tuple[RunningServer, Path]) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    server, _ = explicit
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        assert not client.is_model_ready("idle")
        client.load_model("idle")
        assert client.is_model_ready("idle")
        names = {row.name for row in client.get_model_repository_index().models}
        assert "idle" in names
        client.unload_model("idle")
        assert not client.is_model_ready("idle")
        with pytest.raises(InferenceServerException) as info:
            client.load_model("idle", config='{"max_batch_size": -1}')
        assert "INVALID_ARGUMENT" in str(info.value.status())
        with pytest.raises(InferenceServerException) as info:
            client.load_model("does_not_exist")
        assert "NOT_FOUND" in str(info.value.status())
    finally:
        client.close()


def test_grpc_reload_whose_new_files_fail_is_invalid_argument(
    explicit: tuple[RunningServer, Path],
) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    server, repo = explicit
    (repo / "swap" / "1" / "broken").write_text("x")  # version 1's files change, and fail
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        with pytest.raises(InferenceServerException) as info:
            client.load_model("swap")
        assert "INVALID_ARGUMENT" in str(info.value.status())
        assert "still serving version 1" in info.value.message()
        assert str(repo) not in info.value.message()
        assert client.is_model_ready("swap")
    finally:
        client.close()


PASS_THROUGH = """
class Model:
    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1]}]
    outputs = [{"name": "y", "datatype": "FP32", "shape": [-1]}]

    def predict(self, inputs):
        return {"y": inputs["x"]}
"""


async def test_scrapes_during_parallel_start_up_see_consistent_records(tmp_path: Path) -> None:
    """Loader threads must not change the repository's records while the event loop reads
    them (every /metrics scrape does): that raised 'dictionary changed size during
    iteration'. A tiny GIL switch interval makes the interleaving likely."""
    for index in range(120):
        write_python_model(tmp_path, f"m{index}", PASS_THROUGH)
    server = Server(Settings(model_repository=tmp_path, http_port=0, grpc_port=0, load_threads=16))
    errors: list[BaseException] = []
    started = False

    async def scrape() -> None:
        while not started:
            try:
                for _ in range(20):
                    server.repository.loaded_models()
                    server.repository.index()
                server.telemetry.observability.refresh()
            except RuntimeError as exc:
                errors.append(exc)
            await asyncio.sleep(0)

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        scraper = asyncio.create_task(scrape())
        await server.start()
        started = True
        await scraper
        assert len(server.repository.index(ready_only=True)) == 120
    finally:
        sys.setswitchinterval(previous)
        await server.stop()
    assert errors == []
