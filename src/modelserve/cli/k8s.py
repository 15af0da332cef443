"""``modelserve k8s``: Kubernetes manifests for a user's image and model repository.

    modelserve k8s render --image REGISTRY/modelserve:0.1.0 --models s3://b/models [--hpa|--keda]
    modelserve k8s render --kserve --image … --models s3://b/models/iris --model-name iris
    modelserve k8s render --image … --models s3://b/models --out deploy/kubernetes
    modelserve k8s adapter-values        # prometheus-adapter rules for the --hpa custom metric

The manifests come from cli/manifests.py; ``--out`` writes every variant as a Kustomize tree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    k8s = sub.add_parser(
        "k8s",
        help="print Kubernetes (and KServe) manifests for an image and a model repository",
        description="Kubernetes manifests for modelserve (docs/deploy.md).",
    )
    commands = k8s.add_subparsers(dest="k8s_command", required=True, metavar="COMMAND")
    render = commands.add_parser(
        "render",
        help="print the manifests (Deployment, Service, PDB, autoscaler, monitoring; or KServe)",
        description="Print the manifests as one YAML stream, or write every variant as a "
        "Kustomize tree with --out.",
    )
    render.add_argument("--image", required=True, help="the modelserve image to run")
    render.add_argument(
        "--models",
        required=True,
        metavar="URL",
        help="the model repository: s3://, gs:// or az:// (synced by the server), "
        "pvc://<claim>[/<path>], or a folder inside the image; with --kserve, the storage URI "
        "of one model",
    )
    render.add_argument("--name", default="modelserve", help="name of every object")
    render.add_argument("--namespace", help="namespace of the objects (default: none written)")
    render.add_argument("--replicas", type=int, default=2, help="replicas, or the minimum")
    render.add_argument("--max-replicas", type=int, default=10, help="autoscaling maximum")
    scaling = render.add_mutually_exclusive_group()
    scaling.add_argument(
        "--hpa",
        action="store_true",
        help="a HorizontalPodAutoscaler on CPU and requests in flight (prometheus-adapter)",
    )
    scaling.add_argument(
        "--keda", action="store_true", help="a KEDA ScaledObject on requests in flight and CPU"
    )
    render.add_argument(
        "--target-inflight",
        type=int,
        default=8,
        help="requests in flight per pod the autoscaler aims at",
    )
    render.add_argument(
        "--prometheus-url",
        default="http://prometheus-operated.monitoring.svc:9090",
        help="the Prometheus KEDA and prometheus-adapter query",
    )
    render.add_argument(
        "--no-monitoring",
        dest="monitoring",
        action="store_false",
        help="leave out the ServiceMonitor and the Grafana dashboard ConfigMap",
    )
    render.add_argument(
        "--kserve",
        action="store_true",
        help="a KServe ClusterServingRuntime and an InferenceService instead",
    )
    render.add_argument(
        "--model-name", help="with --kserve: the InferenceService, and so the model, name"
    )
    render.add_argument(
        "--model-format", default="onnx", help="with --kserve: the model's format (onnx…)"
    )
    render.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="write every variant as a Kustomize tree in DIR instead of printing",
    )
    render.set_defaults(run=run_render)
    adapter = commands.add_parser(
        "adapter-values",
        help="print prometheus-adapter Helm values serving modelserve_inflight_requests",
    )
    adapter.add_argument(
        "--prometheus-url", default="http://prometheus-operated.monitoring.svc:9090"
    )
    adapter.set_defaults(run=run_adapter_values)


def _spec(args: argparse.Namespace) -> Any:
    from modelserve.cli.manifests import DeploymentSpec

    return DeploymentSpec(
        image=args.image,
        models=args.models,
        name=args.name,
        namespace=args.namespace,
        replicas=args.replicas,
        max_replicas=args.max_replicas,
        autoscaler="hpa" if args.hpa else "keda" if args.keda else None,
        kserve=args.kserve,
        model_name=args.model_name,
        model_format=args.model_format,
        target_inflight=args.target_inflight,
        prometheus_url=args.prometheus_url,
        monitoring=args.monitoring,
    )


def run_render(args: argparse.Namespace) -> int:
    from modelserve.cli.main import CommandError
    from modelserve.cli.manifests import SpecError, kustomize_tree, render

    spec = _spec(args)
    try:
        if args.out is None:
            sys.stdout.write(render(spec))
            if spec.autoscaler == "hpa":
                print(
                    "modelserve: the HPA's modelserve_inflight_requests needs prometheus-adapter "
                    "with the rule from 'modelserve k8s adapter-values'",
                    file=sys.stderr,
                )
            return 0
        if args.hpa or args.keda or args.kserve:
            raise CommandError("--out writes every variant: leave out --hpa, --keda and --kserve")
        command = f"modelserve k8s render --image {spec.image} --models {spec.models}"
        if spec.name != "modelserve":
            command += f" --name {spec.name}"
        if spec.namespace:
            command += f" --namespace {spec.namespace}"
        header = f"# Written by `{command} --out DIR` (docs/deploy.md).\n"
        tree = kustomize_tree(spec, header)
    except SpecError as exc:
        raise CommandError(str(exc)) from None
    try:
        for path, text in tree.items():
            target = args.out / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    print(f"wrote {len(tree)} files to {args.out}", file=sys.stderr)
    return 0


def run_adapter_values(args: argparse.Namespace) -> int:
    from modelserve.cli.main import CommandError
    from modelserve.cli.manifests import DeploymentSpec, SpecError, adapter_values

    spec = DeploymentSpec(image="modelserve", models="/models", prometheus_url=args.prometheus_url)
    try:
        sys.stdout.write(adapter_values(spec))
    except SpecError as exc:
        raise CommandError(str(exc)) from None
    return 0
