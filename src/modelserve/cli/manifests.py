"""Kubernetes manifests for a modelserve deployment, from the templates in ``templates/``
(package data): a Deployment, Service and PodDisruptionBudget; a HorizontalPodAutoscaler or a
KEDA ScaledObject; a ServiceMonitor and the Grafana dashboard; or, for KServe, a
ClusterServingRuntime and an InferenceService. ``modelserve k8s render`` prints them
(cli/k8s.py); ``--out`` writes them as the Kustomize tree kept in deploy/kubernetes/.

The templates are YAML text with ``${name}`` placeholders, filled as text so that their comments
reach the user: a placeholder that is a whole value becomes a YAML block (mappings, lists), a
double-quoted scalar (strings) or a literal block (the dashboard); one inside a longer string
must be a plain, already checked token (a name, a number).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import yaml

__all__ = [
    "DRAIN_DELAY_S",
    "PRESTOP_S",
    "SHUTDOWN_TIMEOUT_S",
    "STOP_MARGIN_S",
    "Block",
    "DeploymentSpec",
    "SpecError",
    "adapter_values",
    "kustomize_tree",
    "render",
]

PRESTOP_S = 5
"""preStop sleep: endpoints and load balancers stop sending new connections meanwhile."""
DRAIN_DELAY_S = 5
"""--drain-delay-secs: after SIGTERM, serve while not-ready."""
SHUTDOWN_TIMEOUT_S = 25
"""--shutdown-timeout-secs: queued and running requests get this long to finish."""
STOP_MARGIN_S = 10
"""For the gRPC grace and the HTTP close after the shutdown timeout (server/compose.py)."""
REMOTE_POLL_S = 30
INFLIGHT_METRIC = "modelserve_inflight_requests"
"""The server's gauge of inference requests in flight (observability/metrics.py)."""
INFLIGHT_WINDOW = "1m"
LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$")
PLAIN = re.compile(r"^[A-Za-z0-9._:/@+-]*$")
PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
WHOLE_VALUE = re.compile(r"^(?P<indent>\s*)(?P<key>(?:- )?[^\s#][^#]*?:) \$\{(?P<var>\w+)\}\s*$")
OBJECT_STORES = ("s3", "gs", "az", "abfs", "gcs")
TEMPLATES = "templates"


class SpecError(ValueError):
    """Options that cannot make a valid deployment; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Block:
    """A string written as a YAML literal block (``|``)."""

    text: str


@dataclass(frozen=True, slots=True)
class DeploymentSpec:
    """What the user asked for (``modelserve k8s render`` flags)."""

    image: str
    models: str
    name: str = "modelserve"
    namespace: str | None = None
    replicas: int = 2
    max_replicas: int = 10
    autoscaler: str | None = None
    """None, "hpa" or "keda"."""
    kserve: bool = False
    model_name: str | None = None
    model_format: str = "onnx"
    target_inflight: int = 8
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    monitoring: bool = True

    def check(self) -> None:
        if not LABEL.match(self.name):
            raise SpecError(f"--name '{self.name}' is not a DNS label (a-z, 0-9, '-')")
        if self.namespace is not None and not LABEL.match(self.namespace):
            raise SpecError(f"--namespace '{self.namespace}' is not a DNS label")
        if self.model_name is not None and not LABEL.match(self.model_name):
            raise SpecError(
                f"--model-name '{self.model_name}' is not a DNS label (KServe names the "
                "InferenceService and its host after it)"
            )
        if not IMAGE.match(self.image):
            raise SpecError(f"--image '{self.image}' is not an image reference")
        if not 1 <= self.replicas <= self.max_replicas:
            raise SpecError("--replicas must be at least 1 and at most --max-replicas")
        if self.target_inflight < 1:
            raise SpecError("--target-inflight must be at least 1")
        if not re.match(r"^https?://[^\s'\"{}]+$", self.prometheus_url):
            raise SpecError(f"--prometheus-url '{self.prometheus_url}' is not an http(s) URL")
        if not PLAIN.match(self.model_format) or not self.model_format:
            raise SpecError(f"--model-format '{self.model_format}' is not a format name")
        scheme = self.models.split("://", 1)[0] if "://" in self.models else ""
        if self.kserve:
            if not scheme:
                raise SpecError(
                    "--models for KServe is a storage URI KServe downloads "
                    "(s3://, gs://, pvc://, https://…), not a path"
                )
            if self.autoscaler is not None:
                raise SpecError(
                    "KServe scales an InferenceService itself (minReplicas/maxReplicas): "
                    "leave out --hpa and --keda with --kserve"
                )
        elif scheme and scheme not in (*OBJECT_STORES, "pvc"):
            raise SpecError(
                f"--models '{self.models}': use an object-store URL (s3://, gs://, az://), "
                "pvc://<claim>[/<path>] or a folder inside the image"
            )
        elif not scheme and not self.models.startswith("/"):
            raise SpecError(f"--models '{self.models}': a folder inside the image is absolute")
        if scheme == "pvc" and not LABEL.match(self.models[6:].split("/", 1)[0]):
            raise SpecError(f"--models '{self.models}': pvc://<claim>[/<path>]")


def _template(name: str) -> str:
    return resources.files("modelserve.cli").joinpath(TEMPLATES, name).read_text("utf-8")


def _block(value: Any, indent: int) -> str:
    dumped = yaml.safe_dump(value, sort_keys=False, default_flow_style=False, width=100)
    pad = " " * indent
    return "\n".join(pad + line for line in dumped.rstrip("\n").splitlines())


def _scalar(text: str) -> str:
    """A string as a YAML scalar: plain when YAML reads it back as the same string."""
    if text and PLAIN.match(text) and yaml.safe_load(text) == text:
        return text
    return json.dumps(text)


def fill(template: str, values: dict[str, Any]) -> str:
    """The template with every ``${name}`` replaced (see the module docstring)."""
    lines: list[str] = []
    for line in template.splitlines():
        whole = WHOLE_VALUE.match(line)
        if whole is not None:
            value = values[whole["var"]]
            head = whole["indent"] + whole["key"]
            width = len(whole["indent"]) + (2 if whole["key"].startswith("- ") else 0)
            if isinstance(value, Block):
                body = "\n".join(" " * (width + 2) + text for text in value.text.splitlines())
                lines.append(f"{head} |\n{body}")
            elif isinstance(value, dict | list) and value:
                lines.append(f"{head}\n{_block(value, width + 2)}")
            elif isinstance(value, dict | list):
                lines.append(f"{head} {'{}' if isinstance(value, dict) else '[]'}")
            elif isinstance(value, bool | int):
                lines.append(f"{head} {json.dumps(value)}")
            else:
                lines.append(f"{head} {_scalar(str(value))}")
            continue

        def inline(match: re.Match[str]) -> str:
            text = str(values[match[1]])
            if not PLAIN.match(text):
                raise SpecError(f"'{text}' cannot go inside a longer value")
            return text

        lines.append(PLACEHOLDER.sub(inline, line))
    return "\n".join(lines) + "\n"


# ---- the values the templates take ------------------------------------------------------------


def _labels(spec: DeploymentSpec) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "modelserve",
        "app.kubernetes.io/instance": spec.name,
        "app.kubernetes.io/component": "inference-server",
    }


def _selector(spec: DeploymentSpec) -> dict[str, str]:
    return {"app.kubernetes.io/name": "modelserve", "app.kubernetes.io/instance": spec.name}


def inflight_query(spec: DeploymentSpec) -> str:
    """Requests in flight over every pod of the Service, each pod's averaged over a minute
    (the gauge is sampled at each scrape)."""
    matchers = f'service="{spec.name}"'
    if spec.namespace:
        matchers += f',namespace="{spec.namespace}"'
    return f"sum(avg_over_time({INFLIGHT_METRIC}{{{matchers}}}[{INFLIGHT_WINDOW}]))"


def _server(spec: DeploymentSpec) -> dict[str, Any]:
    """Arguments, environment and volumes of the modelserve container for --models."""
    env = [
        {"name": "MODELSERVE_DRAIN_DELAY_SECS", "value": str(DRAIN_DELAY_S)},
        {"name": "MODELSERVE_SHUTDOWN_TIMEOUT_SECS", "value": str(SHUTDOWN_TIMEOUT_S)},
    ]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    env_from: list[dict[str, Any]] = []
    scheme = spec.models.split("://", 1)[0] if "://" in spec.models else ""
    if scheme == "pvc":
        claim, _, sub = spec.models[len("pvc://") :].partition("/")
        args = ["/models", "--model-control-mode=poll"]
        mount: dict[str, Any] = {"name": "models", "mountPath": "/models", "readOnly": True}
        if sub:
            mount["subPath"] = sub
        mounts.append(mount)
        volumes.append(
            {"name": "models", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
    elif scheme:
        args = [spec.models, "--model-control-mode=poll"]
        env.append({"name": "MODELSERVE_REPOSITORY_POLL_SECS", "value": str(REMOTE_POLL_S)})
        env.append({"name": "MODELSERVE_REPOSITORY_CACHE_DIR", "value": "/var/cache/modelserve"})
        mounts.append({"name": "cache", "mountPath": "/var/cache/modelserve"})
        volumes.append({"name": "cache", "emptyDir": {}})
        # Credentials (AWS_ACCESS_KEY_ID…, docs/deploy.md), when the pod has no workload identity.
        env_from.append({"secretRef": {"name": f"{spec.name}-storage", "optional": True}})
    else:
        args = [spec.models]
    return {
        "args": args,
        "env": env,
        "env_from": env_from,
        "volume_mounts": mounts,
        "volumes": volumes,
    }


def _values(spec: DeploymentSpec) -> dict[str, Any]:
    dashboard = _template("grafana-dashboard.json")
    return {
        "name": spec.name,
        "image": spec.image,
        "models": spec.models,
        "labels": _labels(spec),
        "selector": _selector(spec),
        "replicas": spec.replicas,
        "max_replicas": spec.max_replicas,
        "grace_period": PRESTOP_S + DRAIN_DELAY_S + SHUTDOWN_TIMEOUT_S + STOP_MARGIN_S,
        "prestop_seconds": PRESTOP_S,
        "target_inflight": spec.target_inflight,
        "prometheus_url": spec.prometheus_url,
        "inflight_query": inflight_query(spec),
        "dashboard": Block(dashboard),
        "model_name": spec.model_name or spec.name,
        "model_format": spec.model_format,
        **_server(spec),
    }


def _with_namespace(text: str, spec: DeploymentSpec, cluster_scoped: bool = False) -> str:
    if spec.namespace is None or cluster_scoped:
        return text
    return text.replace("\nmetadata:\n", f"\nmetadata:\n  namespace: {spec.namespace}\n", 1)


# ---- what is rendered --------------------------------------------------------------------------

BASE = ("deployment.yaml", "service.yaml", "poddisruptionbudget.yaml")
MONITORING = ("servicemonitor.yaml", "grafana-dashboard-configmap.yaml")
AUTOSCALERS = {"hpa": "horizontalpodautoscaler.yaml", "keda": "scaledobject.yaml"}
KSERVE = ("clusterservingruntime.yaml", "inferenceservice.yaml")
CLUSTER_SCOPED = ("clusterservingruntime.yaml",)


def _documents(spec: DeploymentSpec, names: tuple[str, ...]) -> dict[str, str]:
    values = _values(spec)
    return {
        name: _with_namespace(fill(_template(name), values), spec, name in CLUSTER_SCOPED)
        for name in names
    }


def _selected(spec: DeploymentSpec) -> tuple[str, ...]:
    if spec.kserve:
        return KSERVE
    names = BASE + (MONITORING if spec.monitoring else ())
    if spec.autoscaler is not None:
        names += (AUTOSCALERS[spec.autoscaler],)
    return names


def render(spec: DeploymentSpec) -> str:
    """The manifests asked for, as one multi-document YAML stream."""
    spec.check()
    documents = _documents(spec, _selected(spec))
    return "---\n".join(documents.values())


def adapter_values(spec: DeploymentSpec) -> str:
    """Helm values for prometheus-adapter that serve modelserve_inflight_requests."""
    spec.check()
    url = urlsplit(spec.prometheus_url)
    service = f"{url.scheme}://{url.hostname}{url.path.rstrip('/')}"
    port = url.port or (443 if url.scheme == "https" else 80)
    values = {"prometheus_service": service, "prometheus_port": port}
    return fill(_template("prometheus-adapter-values.yaml"), values)


def _kustomization(kind: str, resources_: list[str], components: list[str] | None = None) -> str:
    version = "v1alpha1" if kind == "Component" else "v1beta1"
    document: dict[str, Any] = {"apiVersion": f"kustomize.config.k8s.io/{version}", "kind": kind}
    if resources_:
        document["resources"] = resources_
    if components:
        document["components"] = components
    return yaml.safe_dump(document, sort_keys=False)


def kustomize_tree(spec: DeploymentSpec, header: str) -> dict[str, str]:
    """Every variant as a Kustomize tree (relative path -> text): base, components
    (monitoring, hpa, keda), overlays (hpa, keda), kserve, and the prometheus-adapter values."""
    spec.check()
    if "://" not in spec.models:
        raise SpecError("--out writes the KServe example too: give --models as a URL")
    every = BASE + MONITORING + tuple(AUTOSCALERS.values())
    documents = _documents(spec, every)
    model = spec.model_name or "iris"
    example = {"kserve": True, "model_name": model, "models": f"{spec.models.rstrip('/')}/{model}"}
    kserve = _documents(DeploymentSpec(**{**_fields(spec), **example}), KSERVE)
    tree: dict[str, str] = {}
    for name in BASE:
        tree[f"base/{name}"] = documents[name]
    tree["base/kustomization.yaml"] = _kustomization("Kustomization", list(BASE))
    for component, names in (
        ("monitoring", MONITORING),
        ("hpa", (AUTOSCALERS["hpa"],)),
        ("keda", (AUTOSCALERS["keda"],)),
    ):
        for name in names:
            tree[f"components/{component}/{name}"] = documents[name]
        tree[f"components/{component}/kustomization.yaml"] = _kustomization(
            "Component", list(names)
        )
    for overlay in ("hpa", "keda"):
        tree[f"overlays/{overlay}/kustomization.yaml"] = _kustomization(
            "Kustomization",
            ["../../base"],
            ["../../components/monitoring", f"../../components/{overlay}"],
        )
    for name in KSERVE:
        tree[f"kserve/{name}"] = kserve[name]
    tree["kserve/kustomization.yaml"] = _kustomization("Kustomization", list(KSERVE))
    tree["prometheus-adapter/values.yaml"] = adapter_values(spec)
    return {path: header + text for path, text in sorted(tree.items())}


def _fields(spec: DeploymentSpec) -> dict[str, Any]:
    return {name: getattr(spec, name) for name in spec.__dataclass_fields__}
