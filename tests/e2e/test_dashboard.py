"""The dashboard (``--ui``) in a real browser: Playwright driving Debian's headless Chromium
(/usr/bin/chromium, tests/system/packages.txt; no browser download). The overview lists the
example models, a model page's charts gain points while a load runs, its buttons unload and load
the model, a monitored model's page shows its accuracy and drift as predictions and labels
arrive, the overview shows each version's validation verdict, a rollback button rolls an
experiment back, a mirrored version's agreement shows, and with auth on the page needs an admin
token. Each page's screenshot is
written to docs/images/ (committed; shown in docs/dashboard.md)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, Locator, Page, sync_playwright

from modelserve.config.settings import TokenConfig
from modelserve.security.auth import hash_token
from tests.conftest import EXAMPLES, ROOT, RunningServer, Servers
from tests.e2e.test_validation import classifier
from tests.harness import CliProcess, write_python_model
from tests.monitoring_helpers import (
    in_distribution,
    monitored_repo,
    monitoring,
    predict_all,
    send_labels,
)
from tests.payload_helpers import wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IMAGES = ROOT / "docs" / "images"
LOADED = ("iris_onnx", "iris_sklearn", "mlp_onnx", "python_add")
ADMIN_TOKEN = "dashboard-admin-token-0123456789"
READER_TOKEN = "dashboard-reader-token-0123456789"
IRIS = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [5, 3, 1, 0]}]}


@pytest.fixture(scope="module")
def ui_server(model_repo: Path, serve_module: Servers) -> RunningServer:
    return serve_module(model_repo, ui=True, model_control_mode="explicit", load_models=LOADED)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing (tests/system/packages.txt)"
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


def _shoot(page: Page, name: str, tmp_path: Path, part: Locator | None = None) -> None:
    """The page's screenshot (or of its ``part``): into docs/images/ when it is missing there
    or with MODELSERVE_SCREENSHOTS=1 (then commit it), else beside the test's files, so that
    running the suite leaves the worktree clean."""
    target = IMAGES / name
    if target.exists() and os.environ.get("MODELSERVE_SCREENSHOTS") != "1":
        target = tmp_path / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if part is not None:
        part.screenshot(path=str(target))
    else:
        page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000


def test_the_overview_lists_the_example_models(
    ui_server: RunningServer, browser: BrowserContext, tmp_path: Path
) -> None:
    page = browser.new_page()
    response = page.goto(f"{ui_server.http}/ui")
    assert response is not None and response.status == 200
    rows = page.locator("#models tbody th[scope=row]")
    names = set(rows.all_inner_texts())
    examples = {p.name for p in EXAMPLES.iterdir() if (p / "model.yaml").exists()}
    assert examples <= names
    iris = page.locator("#models tbody tr", has=page.locator("a", has_text="iris_onnx")).first
    assert "READY" in iris.inner_text() and "onnx" in iris.inner_text()
    # the script refreshes the table from /ui/api/summary: the uptime moves
    before = page.locator('#server dd[data-field="Uptime"]').inner_text()
    page.wait_for_function(
        "b => document.querySelector('#server dd[data-field=\"Uptime\"]').textContent !== b",
        arg=before,
        timeout=15_000,
    )
    _shoot(page, "dashboard-overview.png", tmp_path)


def _load(url: str, stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        while not stop.is_set():
            assert client.post("/v2/models/iris_onnx/infer", json=IRIS).status_code == 200


def test_a_model_page_charts_points_while_a_load_runs(
    ui_server: RunningServer, browser: BrowserContext, tmp_path: Path
) -> None:
    page = browser.new_page()
    loaded: dict[str, int] = {}
    page.on("response", lambda r: loaded.setdefault(r.url, len(r.body())))
    assert page.goto(f"{ui_server.http}/ui/models/iris_onnx") is not None
    page.wait_for_load_state("networkidle")
    weight = sum(size for url, size in loaded.items() if "/api/" not in url)
    assert weight < 200_000, loaded  # the page and everything it loads
    assert all(url.startswith(ui_server.http) for url in loaded)  # nothing from elsewhere
    stop = threading.Event()
    loader = threading.Thread(target=_load, args=(ui_server.http, stop), daemon=True)
    loader.start()
    try:
        chart = page.locator("#chart-requests")
        page.wait_for_function(
            "() => +(document.getElementById('chart-requests').dataset.points || 0) > 0",
            timeout=20_000,
        )
        first = int(chart.get_attribute("data-points") or 0)
        page.wait_for_function(
            f"() => +document.getElementById('chart-requests').dataset.points > {first + 1}",
            timeout=20_000,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the 1-second points count the load's requests
            doc = httpx.get(f"{ui_server.http}/ui/api/models/iris_onnx").json()
            rates = doc["versions"][0]["series"]["requests_per_s"]
            if any(rate > 0 for rate in rates):
                break
            time.sleep(0.2)
        else:
            pytest.fail("no second of the series counted the load")
        assert page.locator("#chart-latency canvas").count() == 1
        _shoot(page, "dashboard-model.png", tmp_path)
    finally:
        stop.set()
        loader.join(timeout=15)


def test_the_model_page_buttons_unload_and_load_from_the_keyboard(
    ui_server: RunningServer, browser: BrowserContext
) -> None:
    page = browser.new_page()
    page.goto(f"{ui_server.http}/ui/models/python_add")
    ready_url = f"{ui_server.http}/v2/models/python_add/ready"
    unload = page.get_by_role("button", name="Unload python_add", exact=True)
    unload.focus()
    # the page is already at the URL the form redirects back to: wait for the navigation the
    # post causes, not for the URL (which matched before the post was even sent)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    wait_for(lambda: httpx.get(ready_url).status_code == 503, timeout=15)
    assert "UNAVAILABLE" in page.locator("#versions").inner_text()
    with page.expect_navigation():
        page.get_by_role("button", name="Load python_add", exact=True).click()
    wait_for(lambda: httpx.get(ready_url).status_code == 200, timeout=15)
    # a form posted from another site is refused
    refused = httpx.post(
        f"{ui_server.http}/ui/models/python_add/unload", headers={"sec-fetch-site": "cross-site"}
    )
    assert refused.status_code == 403


def test_a_monitored_model_page_shows_accuracy_and_drift_as_labels_arrive(
    model_repo: Path, tmp_path: Path, serve: Servers, browser: BrowserContext
) -> None:
    repo = monitored_repo(
        model_repo,
        tmp_path / "repo",
        {"reference": "reference.csv", "window": {"rows": 200, "seconds": 600}},
    )
    server = serve(repo, ui=True, state_dir=tmp_path / "state")
    page = browser.new_page()
    page.goto(f"{server.http}/ui/models/iris")
    section = page.locator("#monitoring")
    assert "no window tested yet" in section.inner_text()
    assert page.locator("#monitoring-drift tbody").inner_text().strip() == "None yet."
    rows, truth = in_distribution(300)
    predicted = predict_all(server.http, "iris", rows[:200], "dash")
    # the first window closes at exactly 200 rows, before any shifted row comes
    wait_for(
        lambda: monitoring(server.http, "iris")["versions"]["1"]["drift"].get("window") == "closed"
    )
    first = monitoring(server.http, "iris")["versions"]["1"]["drift"]
    assert first["window"] == "closed" and first["window_rows"] == 200
    shifted = rows[200:].copy()
    shifted[:, 2] += 3  # the second window: feature 2 moved far from the training data
    predicted += predict_all(server.http, "iris", shifted, "dash", start=200)
    labels = [{"id": f"dash-{i}", "label": int(t)} for i, t in enumerate(truth[:240])]
    assert send_labels(server.http, "iris", labels)["accepted"] == 240
    right = sum(int(p == t) for p, t in zip(predicted[:240], truth[:240], strict=True))
    accuracy = f"{right / 240:.4g}"
    # the page refreshes itself (every 2 s; the store is read again after 5 s): no reload
    all_time = page.locator("#monitoring-accuracy tbody tr", has_text="all time")
    all_time.filter(has_text=accuracy).wait_for(timeout=30_000)
    assert "240" in all_time.inner_text()
    # every row written (the figures are read every 5 s: wait for the last of them)
    version = page.locator("#monitoring-versions tbody tr", has_text="80.0 %")
    version.wait_for(timeout=30_000)
    assert "300" in version.inner_text() and "80.0 %" in version.inner_text()
    # one feature of four: the model itself drifts from drift_share (0.5) of its features on
    assert "1 of 4 features drifted, fewer than drift_share (open window, 100 rows)" in (
        version.inner_text()
    )
    drift = page.locator("#monitoring-drift tbody tr")
    assert drift.count() == 4
    drifted = page.locator("#monitoring-drift tbody tr.alert")
    assert drifted.count() == 1 and "input[2]" in drifted.inner_text()
    assert "ks" in drifted.inner_text()
    document = httpx.get(f"{server.http}/ui/api/models/iris").json()["monitoring"]
    assert document["versions"]["1"]["labelled"] == 240
    assert document["versions"]["1"]["drift"]["features"]["input[2]"]["drifted"] is True
    whole = page.locator("section", has=page.locator("#monitoring"))
    _shoot(page, "dashboard-monitoring.png", tmp_path, whole)


def test_the_overview_shows_each_versions_validation_verdict(
    tmp_path: Path, serve: Servers, model_repo: Path
) -> None:
    folder = classifier(tmp_path / "repo", [1])
    shutil.copytree(model_repo / "iris_onnx", tmp_path / "repo" / "iris_onnx")
    server = serve(tmp_path / "repo", ui=True, model_control_mode="explicit",
                   load_models=("clf", "iris_onnx"))  # fmt: skip
    (folder / "2").mkdir()
    (folder / "2" / "bad").write_text("")  # answers 0 whatever the input: fails its gate
    reply = httpx.post(f"{server.http}/v2/repository/models/clf/load", timeout=60)
    assert reply.status_code == 400, reply.text
    rows = {
        (m["model"], m["version"]): m
        for m in httpx.get(f"{server.http}/ui/api/summary").json()["models"]
    }
    assert rows[("clf", "1")]["validation"] == "passed"
    assert "accuracy 1 >= min 0.9" in rows[("clf", "1")]["validation_detail"]
    assert rows[("clf", "2")]["validation"] == "failed"
    assert rows[("clf", "2")]["validation_detail"].startswith("accuracy 0.")
    assert rows[("iris_onnx", "1")]["validation"] is None  # no gate in its model.yaml
    html = httpx.get(f"{server.http}/ui").text
    assert '<td data-key="validation" class="ok" title="accuracy 1 &gt;= min 0.9' in html
    assert '<td data-key="validation" class="alert" title="accuracy 0.' in html


SIGN = """
from pathlib import Path
import numpy as np

class Model:
    def load(self, version_dir, parameters):
        self.cut = 0.0 if Path(version_dir).name == "1" else 0.5  # version 2 says 1 above 0.5

    def predict(self, inputs):
        return {"label": (inputs["x"][:, 0] > self.cut).astype(np.int64)}
"""
SIGN_CONFIG = {
    "max_batch_size": 8,
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}],
    "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]}],
    "version_policy": {"all": True},
    "default_version": "1",
}


def _sign_body(x: float) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [x]}]}


def _two_sign_versions(tmp_path: Path, serve: Servers) -> tuple[RunningServer, str]:
    """A --ui server of model m (SIGN, versions 1 and 2) and the URL of m's experiment."""
    write_python_model(
        tmp_path / "repo", "m", SIGN, SIGN_CONFIG, versions=[1, 2], entrypoint="Model"
    )
    server = serve(tmp_path / "repo", ui=True, state_dir=tmp_path / "state")
    return server, f"{server.http}/v2/models/m/experiment"


def test_a_rollback_button_rolls_an_experiment_back(
    tmp_path: Path, serve: Servers, browser: BrowserContext
) -> None:
    server, api = _two_sign_versions(tmp_path, serve)
    canary = {"canary": {"version": "2", "steps": [20, 50, 100], "step_interval_s": 3600}}
    assert httpx.put(api, json=canary).status_code == 200
    one = _sign_body(1.0)
    with httpx.Client(base_url=server.http) as client:
        answered = {client.post("/v2/models/m/infer", json=one).json()["model_version"]
                    for _ in range(60)}  # fmt: skip
    assert answered == {"1", "2"}
    page = browser.new_page()
    page.goto(f"{server.http}/ui/models/m")
    facts = page.locator("#experiment-facts")
    assert "running" in facts.inner_text() and "1 of 3" in facts.inner_text()
    arms = page.locator("#experiment-arms tbody tr")
    assert arms.count() == 2
    assert "baseline" in arms.nth(0).inner_text() and "80 %" in arms.nth(0).inner_text()
    assert "candidate" in arms.nth(1).inner_text() and "20 %" in arms.nth(1).inner_text()
    requests = sum(int(arms.nth(i).locator("td").nth(2).inner_text()) for i in range(2))
    assert requests == 60
    whole = page.locator("section", has=page.locator("#experiment"))
    _shoot(page, "dashboard-experiment.png", tmp_path, whole)

    with page.expect_navigation():  # the post, then the page it redirects back to
        page.get_by_role("button", name="Roll back", exact=True).click()
    status = httpx.get(api).json()
    assert status["state"] == "rolled_back" and status["weights"] == {"1": 100, "2": 0}
    assert status["history"][-1]["verdict"] == "rollback"
    assert "rolled back" in page.locator("#experiment-facts").inner_text()
    newest = page.locator("#experiment-history tbody tr").first.inner_text()
    assert "rollback" in newest and "by a user" in newest
    assert page.get_by_role("button", name="Roll back").count() == 0  # nothing left to act on
    with httpx.Client(base_url=server.http) as client:
        assert {client.post("/v2/models/m/infer", json=one).json()["model_version"]
                for _ in range(20)} == {"1"}  # fmt: skip
    # the buttons refuse a form posted from another site
    refused = httpx.post(
        f"{server.http}/ui/models/m/experiment/stop", headers={"sec-fetch-site": "cross-site"}
    )
    assert refused.status_code == 403


def test_the_monitoring_section_shows_a_mirrored_versions_agreement(
    tmp_path: Path, serve: Servers, browser: BrowserContext
) -> None:
    server, api = _two_sign_versions(tmp_path, serve)
    assert httpx.put(api, json={"mirror": {"version": "2"}}).status_code == 200
    grid = [-1.0, -0.5, 0.25, 1.0] * 10  # the versions disagree on 0.25 only: 3 in 4 agree
    with httpx.Client(base_url=server.http) as client:
        for x in grid:
            assert client.post("/v2/models/m/infer", json=_sign_body(x)).status_code == 200
    wait_for(lambda: (httpx.get(api).json().get("shadow") or {}).get("mirrored") == len(grid))
    page = browser.new_page()
    page.goto(f"{server.http}/ui/models/m")
    assert "Not monitored" in page.locator("#monitoring").inner_text()
    row = page.locator("#monitoring-shadow tbody tr").inner_text()
    assert row.split("\t")[:6] == ["2", "40", "40", "0", "0", "75.0 %"], row
    assert httpx.get(f"{server.http}/ui/api/models/m").json()["shadow"]["agreement_ratio"] == 0.75


@pytest.fixture(scope="module")
def auth_ui_server(model_repo: Path, serve_module: Servers) -> RunningServer:
    tokens = (
        TokenConfig(name="admin", token_sha256=hash_token(ADMIN_TOKEN), scopes=("admin",)),
        TokenConfig(name="reader", token_sha256=hash_token(READER_TOKEN), scopes=("read",)),
    )
    return serve_module(
        model_repo,
        ui=True,
        model_control_mode="explicit",
        load_models=("iris_onnx",),
        auth_tokens=tokens,
    )


def test_with_auth_the_page_needs_an_admin_token(
    auth_ui_server: RunningServer, browser: BrowserContext
) -> None:
    base = auth_ui_server.http
    # Chromium turns a Basic challenge it has no credentials for into a navigation error
    # (ERR_INVALID_AUTH_CREDENTIALS): ask through the browser context's own requests
    refused = browser.request.get(f"{base}/ui")
    assert refused.status == 401
    assert refused.headers["www-authenticate"].startswith("Basic")
    assert browser.request.get(f"{base}/ui/api/summary").status == 401
    bearer = {"authorization": f"Bearer {READER_TOKEN}"}
    assert httpx.get(f"{base}/ui/api/summary", headers=bearer).status_code == 403
    bearer = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    assert httpx.get(f"{base}/ui/api/summary", headers=bearer).status_code == 200
    # the token as Basic password, as a browser sends it once the user typed it in its prompt
    basic = base64.b64encode(f"ops:{ADMIN_TOKEN}".encode()).decode()
    browser.set_extra_http_headers({"authorization": f"Basic {basic}"})
    page = browser.new_page()
    response = page.goto(f"{base}/ui")
    assert response is not None and response.status == 200
    assert page.locator("#models a", has_text="iris_onnx").count() == 1
    before = page.locator('#server dd[data-field="Uptime"]').inner_text()
    page.wait_for_function(  # the page's own polling is let in too
        "b => document.querySelector('#server dd[data-field=\"Uptime\"]').textContent !== b",
        arg=before,
        timeout=15_000,
    )


def test_with_workers_the_figures_cover_every_worker(model_repo: Path, tmp_path: Path) -> None:
    repo, shared = tmp_path / "models", tmp_path / "metrics"
    shutil.copytree(model_repo / "iris_onnx", repo / "iris_onnx")
    shared.mkdir()
    args = ["serve", str(repo), "--http-port", "0", "--grpc-port", "0", "--workers", "2"]
    with CliProcess([*args, "--ui", "--metrics-dir", str(shared)]) as cli:
        cli.wait_for("server ready", timeout=90, count=2)
        port = int(cli.wait_for(r"HTTP port (\d+)").group(1))
        base = f"http://127.0.0.1:{port}"
        sent = 0
        deadline = time.monotonic() + 60
        while len(_per_worker(shared)) < 2 or min(_per_worker(shared).values()) == 0:
            assert time.monotonic() < deadline, "the kernel never gave both workers a request"
            for _ in range(10):  # a new connection each time: the kernel spreads them
                assert httpx.post(f"{base}/v2/models/iris_onnx/infer", json=IRIS).is_success
                sent += 1
            time.sleep(0.5)
        while True:  # whichever worker answers adds every worker's seconds up
            versions = httpx.get(f"{base}/ui/api/models/iris_onnx").json()["versions"]
            counted = sum(versions[0]["series"]["requests_per_s"])
            if counted == sent or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert counted == sent
        assert sum(_per_worker(shared).values()) == sent
        cli.signal(signal.SIGTERM)
        assert cli.wait(60) == 0


def _per_worker(shared: Path) -> dict[str, int]:
    """Requests each worker's shared time series counted so far."""
    counts = {}
    for path in shared.glob("timeseries.*.json"):
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        counts[path.name] = sum(raw[1] for rings in document.values() for raw in rings["s"])
    return counts
