"""``modelserve k8s render`` and ``k8s adapter-values`` from the command line, and the Kustomize
tree in deploy/kubernetes: its overlays hold the same objects as ``render --hpa`` / ``--keda``.

The overlays use only ``resources`` and ``components`` (no patches, no transformers), so
building them is concatenating their files; the test does that itself, since no kustomize is
installed here by default. (``kubectl kustomize`` v5.5.0 built each overlay to the same objects
when this was written; docs/deploy.md gives the commands for a real cluster.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import ROOT, run_cli

TREE = ROOT / "deploy" / "kubernetes"
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
