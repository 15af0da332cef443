"""``modelserve k8s render`` and ``k8s adapter-values`` from the command line, and the Kustomize
tree in deploy/kubernetes: its overlays hold the same objects as ``render --hpa`` / ``--keda``.

The overlays use only ``resources`` and ``components`` (no patches, no transformers), so
building them is concatenating their files; the test does that itself, since no kustomize is
installed here by default. (``kubectl kustomize`` v5.5.0 built each overlay to the same objects
when this was written; docs/deploy.md gives the commands for a real cluster.)"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import yaml

from modelserve.cli.manifests import STOP_MARGIN_S
from tests.harness import ROOT, CliProcess, run_cli

TREE = ROOT / "deploy" / "kubernetes"
KSERVE_GRACE_S = 30
"""The terminationGracePeriodSeconds of the pods KServe makes (Kubernetes' default)."""
ARGS = ["k8s", "render", "--image", "modelserve:0.1.0", "--models", "s3://models/repository"]


def objects(text: str) -> list[dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all(text) if doc]
    return sorted(docs, key=lambda d: (d["kind"], d["metadata"]["name"]))


def kustomize_build(folder: Path) -> list[dict[str, Any]]:
    """Resources and components of a kustomization, recursively (all our tree uses)."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert set(kustomization) <= {"apiVersion", "kind", "resources", "components"}
    found: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []) + kustomization.get("components", []):
        path = (folder / entry).resolve()
        found += kustomize_build(path) if path.is_dir() else objects(path.read_text())
    return sorted(found, key=lambda d: (d["kind"], d["metadata"]["name"]))


@pytest.mark.parametrize("overlay", ["hpa", "keda"])
def test_overlays_hold_what_render_prints(overlay: str) -> None:
    result = run_cli([*ARGS, f"--{overlay}"])
    assert result.returncode == 0, result.stderr
    assert kustomize_build(TREE / "overlays" / overlay) == objects(result.stdout)


def test_kserve_folder_and_base() -> None:
    kinds = [d["kind"] for d in kustomize_build(TREE / "kserve")]
    assert kinds == ["ClusterServingRuntime", "InferenceService"]
    kinds = [d["kind"] for d in kustomize_build(TREE / "base")]
    assert kinds == ["Deployment", "PodDisruptionBudget", "Service"]


def test_render_kserve_and_the_hpa_hint() -> None:
    kserve = run_cli(
        ["k8s", "render", "--kserve", "--image", "r/modelserve:1", "--models", "gs://b/iris"]
    )
    assert kserve.returncode == 0, kserve.stderr
    assert [d["kind"] for d in objects(kserve.stdout)] == [
        "ClusterServingRuntime",
        "InferenceService",
    ]
    hpa = run_cli([*ARGS, "--hpa", "--namespace", "ml"])
    assert "k8s adapter-values" in hpa.stderr
    assert all(d["metadata"]["namespace"] == "ml" for d in objects(hpa.stdout))
    values = yaml.safe_load(run_cli(["k8s", "adapter-values"]).stdout)
    assert values["rules"]["custom"][0]["name"]["as"] == "modelserve_inflight_requests"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--kserve", "--hpa"], "modelserve: KServe scales an InferenceService itself"),
        (["--name", "Bad_Name"], "modelserve: --name 'Bad_Name' is not a DNS label"),
        (["--out", "/proc/no-such-dir", "--hpa"], "modelserve: --out writes every variant"),
        (["--out", "/proc/no-such-dir"], "modelserve: cannot write /proc/no-such-dir"),
    ],
)
def test_mistakes_are_one_line(extra: list[str], message: str) -> None:
    result = run_cli([*ARGS, *extra])
    assert result.returncode == 2
    assert result.stderr.startswith(message) and len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_exclusive_autoscalers_and_required_flags() -> None:
    both = run_cli([*ARGS, "--hpa", "--keda"])
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    missing = run_cli(["k8s", "render", "--models", "/models"])
    assert missing.returncode == 2 and "--image" in missing.stderr


def test_the_kserve_runtime_serves_the_model_as_kserve_starts_it(
    model_repo: Path, tmp_path: Path
) -> None:
    """The ClusterServingRuntime's container run as KServe runs it: its arguments with
    ``{{.Name}}`` filled in with the InferenceService's name, the storage URI downloaded into
    /mnt/models (here a temporary folder holding the artifact itself), its environment (ports 0
    here: tests run side by side). tritonclient infers under that name over REST and gRPC, and
    SIGTERM drains and exits 0 within KServe's default 30 s grace period."""
    result = run_cli(["k8s", "render", "--kserve", "--image", "r/m:1", "--models", "s3://b/iris"])
    runtime, service = objects(result.stdout)
    [container] = runtime["spec"]["containers"]
    name = service["metadata"]["name"]
    mnt = tmp_path / "mnt" / "models"
    mnt.mkdir(parents=True)
    shutil.copy(model_repo / "iris_onnx" / "1" / "model.onnx", mnt / "model.onnx")
    assert container["args"][-1] == "/mnt/models"
    args = [arg.replace("{{.Name}}", name) for arg in container["args"][:-1]]
    args = [re.sub(r"^(--(?:http|grpc|metrics)-port)=\d+$", r"\1=0", arg) for arg in args]
    env = {item["name"]: item["value"] for item in container["env"]}
    with CliProcess(["serve", *args, str(mnt)], env=env) as proc:
        port = proc.wait_ready()
        grpc_port = int(proc.wait_for(r"gRPC listening on [^\s]+:(\d+)").group(1))
        rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]], dtype=np.float32)
        rest = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
        grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        for client, module in ((rest, httpclient), (grpc, grpcclient)):
            x = module.InferInput("input", list(rows.shape), "FP32")
            x.set_data_from_numpy(rows)
            assert client.infer(name, [x]).as_numpy("label").shape == (2,)
        grpc.close()
        rest.close()
        proc.signal()
        drain = float(env["MODELSERVE_DRAIN_DELAY_SECS"])
        shutdown = float(env["MODELSERVE_SHUTDOWN_TIMEOUT_SECS"])
        assert drain + shutdown + STOP_MARGIN_S <= KSERVE_GRACE_S
        assert proc.wait(timeout=drain + shutdown + STOP_MARGIN_S) == 0
