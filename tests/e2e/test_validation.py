"""The validation gate end to end: a version runs on held-out data while it loads; one below its
thresholds never serves (the old one keeps answering, under load, with no failed request), a
good one swaps in; the report is on disk and at GET .../validation; ``modelserve validate`` runs
the same gate offline."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import skops.io as sio
import yaml

from tests.conftest import RunningServer, Servers
from tests.e2e.test_lifecycle import Load
from tests.harness import example_builder, run_cli, write_python_model

build = example_builder()

CLI_TIMEOUT_S = 240.0
"""validate imports scikit-learn and loads two versions: slow on the loaded shared machine."""

# "x" carries both the delay the Load clients ask for (0.002 s) and the feature: a good
# version says 1 above 0.5; a version folder holding a file 'bad' says 0 whatever x is.
CLASSIFIER = """
import time
from pathlib import Path
import numpy as np

class Classifier:
    def load(self, version_dir, parameters):
        self.version = float(Path(version_dir).name)
        self.bad = (Path(version_dir) / "bad").exists()

    def predict(self, inputs):
        x = inputs["x"]
        if x.shape[0] == 1 and x[0, 0] < 0.01:
            time.sleep(float(x[0, 0]))
        label = np.zeros(len(x), dtype=np.int64) if self.bad else (x[:, 0] > 0.5).astype(np.int64)
        version = np.full((x.shape[0], 1), self.version, dtype=np.float32)
        return {"version": version, "label": label}
"""

VALIDATION = {
    "data": "holdout.csv",
    "label": "target",
    "metrics": {"accuracy": {"min": 0.9}, "f1_macro": {"min_relative_change": -0.01}},
}


def write_holdout(path: Path, rows: int = 200) -> None:
    x = np.random.default_rng(0).uniform(0, 1, rows)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["x", "target"])
        writer.writerows(zip(x.tolist(), (x > 0.5).astype(int).tolist(), strict=True))


def classifier(repo: Path, versions: list[int]) -> Path:
    folder = write_python_model(
        repo,
        "clf",
        CLASSIFIER,
        {
            "max_batch_size": 64,
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}],
            "outputs": [
                {"name": "version", "datatype": "FP32", "shape": [-1, 1]},
                {"name": "label", "datatype": "INT64", "shape": [-1]},
            ],
            "validation": VALIDATION,
        },
        versions,
        entrypoint="Classifier",
    )
    write_holdout(folder / "holdout.csv")
    return folder


def index(url: str) -> dict[tuple[str, str], dict[str, str]]:
    rows = httpx.post(f"http://{url}/v2/repository/index").json()
    return {(r["name"], r["version"]): r for r in rows}


async def test_a_failing_version_never_serves_and_a_good_one_swaps_in_under_load(
    tmp_path: Path, serve: Servers
) -> None:
    folder = classifier(tmp_path, [1])
    server = serve(tmp_path, model_control_mode="explicit", load_models=("clf",))
    first = httpx.get(f"{server.http}/v2/models/clf/versions/1/validation").json()
    assert first["passed"] is True and first["metrics"]["accuracy"] == 1.0
    assert "change thresholds skipped: no version to compare with" in first["notes"]

    load = Load(server.url, "clf").start()
    await load.wait_for_version(1)
    (folder / "2").mkdir()
    (folder / "2" / "bad").write_text("")
    async with httpx.AsyncClient(base_url=server.http, timeout=60) as client:
        reply = await client.post("/v2/repository/models/clf/load")
        assert reply.status_code == 400, reply.text
        assert "validation failed: accuracy" in reply.json()["error"]
        assert "(still serving version 1)" in reply.json()["error"]
        rows = index(server.url)
        assert rows[("clf", "2")]["state"] == "UNAVAILABLE"
        reason = rows[("clf", "2")]["reason"]
        assert reason.startswith("validation failed: accuracy 0.") and "< min 0.9" in reason
        assert "f1_macro" in reason and "(baseline 1, min_relative_change -0.01)" in reason
        assert rows[("clf", "1")]["state"] == "READY"
        report = (await client.get("/v2/models/clf/versions/2/validation")).json()
        assert report["passed"] is False and report["baseline_version"] == "1"
        assert report["baseline_metrics"]["accuracy"] == 1.0
        on_disk = json.loads((folder / "2" / "validation_report.json").read_text())
        assert on_disk["failures"] == report["failures"]

        (folder / "3").mkdir()
        reply = await client.post("/v2/repository/models/clf/load")
        assert reply.status_code == 200, reply.text
    await load.wait_for_version(3)
    await load.stop()
    assert load.errors == []
    assert set(load.statuses) == {200}, "no request failed while the gates ran and v3 swapped in"
    assert 2 not in load.versions, "the version that failed its gate never answered"
    assert len(load.statuses) > 20
    assert index(server.url)[("clf", "3")]["state"] == "READY"
    passed = httpx.get(f"{server.http}/v2/models/clf/validation").json()
    assert passed["version"] == "3" and passed["passed"] is True


def test_no_report_for_a_model_without_validation_is_a_404(server: RunningServer) -> None:
    reply = httpx.get(f"{server.http}/v2/models/iris_onnx/versions/1/validation")
    assert reply.status_code == 404
    assert "has no validation report" in reply.json()["error"]


@pytest.fixture
def sklearn_model(tmp_path: Path) -> Path:
    """A real scikit-learn classifier: version 1 fitted on the truth, version 2 on shuffled
    labels (about a third right); holdout.csv in the model folder."""
    from sklearn.linear_model import LogisticRegression

    x, y = build.classification_data()
    folder = tmp_path / "iris"
    for version, labels in ((1, y), (2, np.random.default_rng(1).permutation(y))):
        (folder / str(version)).mkdir(parents=True)
        model = LogisticRegression(max_iter=500).fit(x, labels)
        sio.dump(model, folder / str(version) / "model.skops")
    with (folder / "holdout.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*(f"f{i}" for i in range(x.shape[1])), "target"])
        writer.writerows([*row, label] for row, label in zip(x.tolist(), y.tolist(), strict=True))
    config = {
        "max_batch_size": 64,
        "version_policy": {"latest": 1},
        "validation": {
            "data": "holdout.csv",
            "label": "target",
            "metrics": {"accuracy": {"min": 0.7}, "log_loss": {"max": 2.0}},
        },
    }
    (folder / "model.yaml").write_text(yaml.safe_dump(config))
    return folder


def test_at_start_a_version_below_min_is_unavailable(sklearn_model: Path, serve: Servers) -> None:
    server = serve(sklearn_model.parent)
    rows = index(server.url)
    assert rows[("iris", "2")]["state"] == "UNAVAILABLE"
    assert rows[("iris", "2")]["reason"].startswith("validation failed: accuracy 0.")
    body = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4], "data": [0] * 4}]}
    reply = httpx.post(f"{server.http}/v2/models/iris/infer", json=body)
    assert reply.status_code == 503 and "validation failed" in reply.json()["error"]
    report = httpx.get(f"{server.http}/v2/models/iris/versions/2/validation").json()
    assert report["rows"] == 200 and report["metrics"]["accuracy"] < 0.7


def test_validate_runs_the_gate_offline(sklearn_model: Path, tmp_path: Path) -> None:
    failed = run_cli(["validate", str(sklearn_model)], timeout=CLI_TIMEOUT_S)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "FAILED: accuracy 0." in failed.stdout and "< min 0.7" in failed.stdout
    assert "accuracy\tmin\t0.7\t" in failed.stdout  # plain text when stdout is not a terminal
    out = tmp_path / "report.json"
    passed = run_cli(
        ["validate", str(sklearn_model), "--version", "1", "--out", str(out)],
        timeout=CLI_TIMEOUT_S,
    )
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert json.loads(out.read_text())["passed"] is True
    missing = run_cli(["validate", str(sklearn_model), "--version", "7"], timeout=CLI_TIMEOUT_S)
    assert missing.returncode == 2 and "no version folder 7" in missing.stderr
    assert "Traceback" not in missing.stderr
