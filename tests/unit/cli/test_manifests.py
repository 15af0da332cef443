"""The Kubernetes manifests (cli/manifests.py), validated offline: core kinds against the API
schemas kubernetes-validate ships (strict: unknown fields are errors), the KServe, KEDA and
prometheus-operator kinds against their CRDs' OpenAPI schemas kept in deploy/schemas/ (with
Kubernetes' strict field validation added), and against the server itself: the metric names
the autoscalers and the dashboard query exist, the shutdown timings fit the grace period."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml

from modelserve.cli.manifests import (
    DRAIN_DELAY_S,
    PRESTOP_S,
    SHUTDOWN_TIMEOUT_S,
    STOP_MARGIN_S,
    Block,
    DeploymentSpec,
    SpecError,
    adapter_values,
    fill,
    kustomize_tree,
    render,
)
from modelserve.server.compose import GRPC_GRACE_S
from tests.harness import ROOT, RunningServer

SCHEMAS = ROOT / "deploy" / "schemas"
KUBERNETES_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())
CRD_SCHEMAS = {
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): (
        "kserve-clusterservingruntime-v1alpha1.json"
    ),
    ("serving.kserve.io/v1beta1", "InferenceService"): "kserve-inferenceservice-v1beta1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobject-v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring-servicemonitor-v1.json",
}
IMAGE = "registry.example.com/ml/modelserve:0.1.0"

SPECS = {
    "s3 + hpa": DeploymentSpec(IMAGE, "s3://models/repository", autoscaler="hpa", namespace="ml"),
    "gs + keda": DeploymentSpec(IMAGE, "gs://models/repository", autoscaler="keda"),
    "pvc": DeploymentSpec(IMAGE, "pvc://model-store/repository", name="iris", replicas=1),
    "in the image": DeploymentSpec(IMAGE, "/models", monitoring=False, max_replicas=3),
    "kserve": DeploymentSpec(IMAGE, "s3://models/iris", kserve=True, model_name="iris"),
}


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _strict(node: Any) -> Any:
    """Kubernetes' strict field validation: an object schema that lists its properties and
    neither preserves unknown fields nor describes extra ones rejects unknown fields."""
    if isinstance(node, dict):
        node = {key: _strict(value) for key, value in node.items()}
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_strict(item) for item in node]
    return node


@cache
def crd_validator(file: str) -> jsonschema.Validator:
    schema = json.loads((SCHEMAS / file).read_text())
    return jsonschema.Draft7Validator(_strict(schema))


def validate(doc: dict[str, Any]) -> None:
    key = (doc["apiVersion"], doc["kind"])
    if key in CRD_SCHEMAS:
        # e.message, never str(e): that prints the whole schema (the InferenceService's is big)
        errors = [e.message for e in crd_validator(CRD_SCHEMAS[key]).iter_errors(doc)]
        assert not errors, f"{doc['kind']}: {errors[:3]}"
    else:
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_every_variant_validates(spec: DeploymentSpec) -> None:
    docs = documents(render(spec))
    assert docs
    for doc in docs:
        validate(doc)
        if spec.namespace and doc["kind"] != "ClusterServingRuntime":
            assert doc["metadata"]["namespace"] == spec.namespace


def test_the_kustomize_tree_validates_and_every_file_is_yaml() -> None:
    tree = kustomize_tree(SPECS["s3 + hpa"], "# header\n")
    for path, text in tree.items():
        [doc] = documents(text)
        if path.endswith("kustomization.yaml"):
            assert doc["kind"] in ("Kustomization", "Component")
        elif path == "prometheus-adapter/values.yaml":
            assert doc["rules"]["custom"]
        else:
            validate(doc)


def test_a_broken_manifest_fails_validation() -> None:
    """The validators really reject: a typo in a core kind and in each CRD kind."""
    deployment = documents(render(SPECS["pvc"]))[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    for spec in (SPECS["kserve"], SPECS["gs + keda"]):
        for doc in documents(render(spec)):
            if (doc["apiVersion"], doc["kind"]) in CRD_SCHEMAS:
                doc["spec"]["unknownField"] = 1
                with pytest.raises(AssertionError):
                    validate(doc)


def test_deployment_probes_security_and_drain() -> None:
    docs = {d["kind"]: d for d in documents(render(SPECS["s3 + hpa"]))}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and security["runAsNonRoot"]
    assert security["capabilities"]["drop"] == ["ALL"] and not security["allowPrivilegeEscalation"]
    env = {item["name"]: item["value"] for item in container["env"]}
    drain, shutdown = (
        float(env["MODELSERVE_DRAIN_DELAY_SECS"]),
        float(env["MODELSERVE_SHUTDOWN_TIMEOUT_SECS"]),
    )
    prestop = float(container["lifecycle"]["preStop"]["exec"]["command"][1])
    # After the shutdown timeout the server gives gRPC GRPC_GRACE_S and HTTP 5 s to close.
    assert STOP_MARGIN_S >= GRPC_GRACE_S + 5
    assert pod["terminationGracePeriodSeconds"] >= prestop + drain + shutdown + STOP_MARGIN_S
    assert (prestop, drain, shutdown) == (PRESTOP_S, DRAIN_DELAY_S, SHUTDOWN_TIMEOUT_S)
    assert container["args"] == ["s3://models/repository", "--model-control-mode=poll"]
    ports = {p["name"]: p for p in docs["Service"]["spec"]["ports"]}
    assert ports["grpc"]["appProtocol"] == "grpc" and ports["grpc"]["port"] == 8001
    assert docs["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    metrics = [m["type"] for m in docs["HorizontalPodAutoscaler"]["spec"]["metrics"]]
    assert metrics == ["Resource", "Pods"]


def test_the_image_defaults_match_the_manifests() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert f"ARG DRAIN_DELAY_SECS={DRAIN_DELAY_S}" in dockerfile
    assert f"ARG SHUTDOWN_TIMEOUT_SECS={SHUTDOWN_TIMEOUT_S}" in dockerfile
    assert (ROOT / "deploy" / "Containerfile").resolve() == (ROOT / "deploy" / "Dockerfile")


def test_kserve_runtime() -> None:
    runtime, service = documents(render(SPECS["kserve"]))
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert formats == {"onnx", "sklearn", "xgboost", "lightgbm", "pytorch", "python"}
    assert all(f["autoSelect"] for f in runtime["spec"]["supportedModelFormats"])
    assert runtime["spec"]["protocolVersions"] == ["v2", "grpc-v2"]
    [container] = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container"
    assert "--model-name={{.Name}}" in container["args"] and container["args"][-1] == "/mnt/models"
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["storageUri"] == "s3://models/iris" and service["metadata"]["name"] == "iris"


@pytest.fixture(scope="module")
def exported_metrics(server: RunningServer) -> set[str]:
    """The metric names a real server exports once it has served a request."""
    body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1] * 4}]}
    assert httpx.post(f"{server.http}/v2/models/iris_onnx/infer", json=body).status_code == 200
    text = httpx.get(f"{server.http}/metrics").text
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1].isalpha()}


def _queries(spec: DeploymentSpec) -> Iterator[str]:
    for doc in documents(render(spec)):
        if doc["kind"] == "ScaledObject":
            yield from (t["metadata"]["query"] for t in doc["spec"]["triggers"] if "query" in t)
    for rule in yaml.safe_load(adapter_values(spec))["rules"]["custom"]:
        yield rule["seriesQuery"]
        yield rule["metricsQuery"]


def test_autoscaler_and_dashboard_queries_use_metrics_the_server_exports(
    exported_metrics: set[str],
) -> None:
    texts = list(_queries(SPECS["gs + keda"]))
    dashboard = (ROOT / "deploy" / "grafana" / "modelserve-dashboard.json").read_text()
    texts.append(dashboard)
    used = {name for text in texts for name in re.findall(r"modelserve_[a-z_]+", text)}
    assert "modelserve_inflight_requests" in used
    assert used - exported_metrics == set()
    hpa = next(d for d in documents(render(SPECS["s3 + hpa"])) if d["kind"].startswith("Horiz"))
    adapter = yaml.safe_load(adapter_values(SPECS["s3 + hpa"]))["rules"]["custom"][0]
    assert hpa["spec"]["metrics"][1]["pods"]["metric"]["name"] == adapter["name"]["as"]


def test_dashboard_configmap_carries_the_dashboard() -> None:
    configmap = next(d for d in documents(render(SPECS["s3 + hpa"])) if d["kind"] == "ConfigMap")
    dashboard = (ROOT / "deploy" / "grafana" / "modelserve-dashboard.json").read_text()
    assert json.loads(configmap["data"]["modelserve-dashboard.json"]) == json.loads(dashboard)
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_fill_writes_values_as_yaml() -> None:
    template = (
        "a: ${mapping}\nb: ${items}\nc: ${empty}\nd: ${number}\ne: ${text}\nf: ${plain}\n"
        "g: x-${plain}-y\nh: ${block}\n"
    )
    text = fill(
        template,
        {
            "mapping": {"k": "v: w"},
            "items": [1, "two"],
            "empty": [],
            "number": 3,
            "text": 'say "hi": {now}',
            "plain": "abc",
            "block": Block("line 1\n  line 2"),
        },
    )
    assert yaml.safe_load(text) == {
        "a": {"k": "v: w"},
        "b": [1, "two"],
        "c": [],
        "d": 3,
        "e": 'say "hi": {now}',
        "f": "abc",
        "g": "x-abc-y",
        "h": "line 1\n  line 2\n",
    }
    with pytest.raises(SpecError):
        fill("g: x-${text}\n", {"text": "a: b"})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "Model_Serve"}, "not a DNS label"),
        ({"image": "bad image"}, "not an image reference"),
        ({"models": "relative/path"}, "absolute"),
        ({"models": "ftp://x/y"}, "object-store URL"),
        ({"replicas": 5, "max_replicas": 2}, "--replicas"),
        ({"kserve": True, "models": "/models"}, "storage URI"),
        ({"kserve": True, "models": "s3://a/b", "autoscaler": "hpa"}, "leave out --hpa"),
        ({"prometheus_url": "prometheus:9090"}, "http(s) URL"),
        ({"models": "pvc://Bad_Claim"}, "pvc://"),
    ],
)
def test_bad_options_are_refused(changes: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {"image": IMAGE, "models": "s3://models/repo", **changes}
    with pytest.raises(SpecError, match=re.escape(message)):
        render(DeploymentSpec(**values))


def test_schemas_name_their_source() -> None:
    for file in CRD_SCHEMAS.values():
        comment = json.loads((SCHEMAS / file).read_text())["$comment"]
        assert re.search(r"from github\.com/[\w-]+/[\w-]+@[0-9a-f]{40} \S+\.yaml", comment), file
    assert (SCHEMAS / "README.md").is_file()


def test_the_files_in_deploy_kubernetes_are_up_to_date(tmp_path: Path) -> None:
    from tests.harness import run_cli

    args = ["k8s", "render", "--image", "modelserve:0.1.0", "--models", "s3://models/repository"]
    result = run_cli([*args, "--out", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    written = {p.relative_to(tmp_path): p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    kept = ROOT / "deploy" / "kubernetes"
    committed = {p.relative_to(kept): p.read_text() for p in kept.rglob("*") if p.is_file()}
    assert written == committed, "run `make manifests` and commit deploy/kubernetes"


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_the_container_settings_are_the_servers(spec: DeploymentSpec) -> None:
    """The arguments and MODELSERVE_* variables of every rendered container are flags and
    variables ``modelserve serve`` takes, with the values the grace period was reckoned with."""
    from modelserve.cli.main import build_parser
    from modelserve.config.settings import option_specs
    from modelserve.config.sources import build_settings

    known = {option.env for option in option_specs()}
    fields = {option.field for option in option_specs()}
    checked = 0
    for doc in documents(render(spec)):
        if doc["kind"] not in ("Deployment", "ClusterServingRuntime"):
            continue
        pod = doc["spec"]["template"]["spec"] if doc["kind"] == "Deployment" else doc["spec"]
        [container] = pod["containers"]
        env = {item["name"]: item["value"] for item in container["env"]}
        assert set(env) <= known, set(env) - known
        # KServe fills in {{.Name}} with the InferenceService's name.
        given = [arg.replace("{{.Name}}", "iris") for arg in container["args"]]
        parsed = vars(build_parser().parse_args(["serve", *given]))
        flags = {k: v for k, v in parsed.items() if k in fields and v is not None}
        settings = build_settings(flags, env=env)
        assert str(settings.model_repository) == given[-1 if spec.kserve else 0]
        if doc["kind"] == "Deployment":
            assert settings.drain_delay_s == DRAIN_DELAY_S
            assert settings.shutdown_timeout_s == SHUTDOWN_TIMEOUT_S
            assert settings.model_control_mode == ("poll" if "://" in spec.models else "none")
        else:
            assert (settings.http_port, settings.grpc_port) == (8080, 9000)
            assert settings.model_name == "iris"
        checked += 1
    assert checked == 1
