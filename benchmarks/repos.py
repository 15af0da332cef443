"""Build the model repositories the benchmark serves, under ``.bench/repos/``.

- ``modelserve``: iris_onnx, mlp_onnx and iris_sklearn from ``examples/build_examples.py`` with
  their committed ``model.yaml`` plus ``dynamic_batching: false``, and the detection example
  (detector_onnx and the detector_pipeline around it; ``part_image`` is the JPEG its rows post);
- ``modelserve-batching``: the same with ``dynamic_batching: {max_queue_delay_us: 500}``;
- ``modelserve-logging``: the same as ``modelserve`` with payload logging of every iris_onnx
  request to a file sink (``.bench/payloads/``, rotated at 100 MB, one old file kept);
- ``modelserve-monitoring``: the same as ``modelserve`` with model monitoring of every iris_onnx
  request (the SQLite store under ``.bench/state/``, drift against its training rows);
- ``modelserve-onnx``: the examples' ONNX models (iris_onnx, mlp_onnx, detector_onnx) with their
  committed ``model.yaml`` as they are (start-up time and idle RSS of an ONNX-only repository);
- ``modelserve-sklearn``: iris_sklearn alone (start-up time and idle RSS against MLServer, which
  serves that model alone);
- ``mlserver-off`` / ``mlserver-on``: MLServer's repository with the same fitted iris_sklearn
  estimator dumped with joblib (MLServer's sklearn runtime loads joblib files only), without and
  with MLServer's adaptive batching.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tools import BENCH_DIR, REPO, log

BUILD_DIR = BENCH_DIR / "build"
MODELS = ("iris_onnx", "mlp_onnx", "iris_sklearn")
DETECTION = ("detector_onnx",)
ONNX_ONLY = ("iris_onnx", "mlp_onnx", "detector_onnx")
PIPELINES = ("detector_pipeline",)  # no artifact: copied from examples/models as it is
BATCHING_YAML = "\ndynamic_batching:\n  max_queue_delay_us: 500\n"
OFF_YAML = "\ndynamic_batching: false\n"
"""The batching-off rows: off for certain (without the key, modelserve turns batching on for a
model whose call cost dominates, measured at load: docs/batching.md#batching-by-default)."""
PAYLOAD_DIR = BENCH_DIR / "payloads"
LOGGING_YAML = (
    "\nlogging:\n  sample_rate: 1.0\n  sinks:\n"
    f"    - {{type: file, path: {PAYLOAD_DIR / 'iris_onnx.jsonl'}, rotate_mb: 100, keep: 1}}\n"
)
STATE_DIR = BENCH_DIR / "state"
MONITORING_YAML = "\nmonitoring:\n  reference: reference.csv\n  retention_days: 1\n"
MLSERVER_MAX_BATCH_SIZE = 64
MLSERVER_MAX_BATCH_TIME_S = 0.0005  # the same 500 µs as ours


@dataclass(frozen=True)
class Repos:
    modelserve: Path
    batching: Path
    logging: Path
    monitoring: Path
    onnx_only: Path
    sklearn_only: Path
    mlserver_off: Path
    mlserver_on: Path
    part_image: Path
    build: Path
    """examples/build_examples.py's output: the artifacts PyTriton serves."""


def copy_model(build: Path, model: str, target: Path, extra_yaml: str = "") -> None:
    """``model``'s built version 1 and its committed model.yaml (plus ``extra_yaml``)."""
    dest = target / model
    shutil.copytree(build / model / "1", dest / "1")
    yaml = (REPO / "examples" / "models" / model / "model.yaml").read_text()
    (dest / "model.yaml").write_text(yaml + extra_yaml)


def _mlserver_repo(skops_file: Path, target: Path, batching: bool) -> None:
    import joblib
    import skops.io as sio

    # our own file, built a moment ago: trust the types it lists
    estimator = sio.load(skops_file, trusted=sio.get_untrusted_types(file=skops_file))
    model_dir = target / "iris_sklearn"
    model_dir.mkdir(parents=True)
    joblib.dump(estimator, model_dir / "model.joblib")
    settings: dict[str, object] = {
        "name": "iris_sklearn",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "1"},
        # declared so that perf_analyzer (which reads the metadata) sends the input and asks for
        # both outputs: the same work as one request to modelserve (predict + predict_proba)
        "inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}],
        "outputs": [
            {"name": "predict", "datatype": "INT64", "shape": [-1]},
            {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
        ],
    }
    if batching:
        settings["max_batch_size"] = MLSERVER_MAX_BATCH_SIZE
        settings["max_batch_time"] = MLSERVER_MAX_BATCH_TIME_S
    (model_dir / "model-settings.json").write_text(json.dumps(settings, indent=2))


def _reference_csv(path: Path) -> None:
    """iris_onnx's training rows (examples/build_examples.py's fixed seed) as a CSV file."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "examples", REPO / "examples" / "build_examples.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    x, y = module.classification_data()
    lines = ["f0,f1,f2,f3,label", *(",".join(map(str, [*r, t])) for r, t in zip(x, y, strict=True))]
    path.write_text("\n".join(lines) + "\n")


def build_examples(build: Path) -> None:
    """The example models' artifacts, built into ``build`` by examples/build_examples.py."""
    log("building the example models (examples/build_examples.py)")
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "build_examples.py"), str(build)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"build_examples.py failed:\n{done.stdout}\n{done.stderr}")


def build_repos() -> Repos:
    root = BENCH_DIR / "repos"
    build = BUILD_DIR
    build_examples(build)
    if root.exists():
        shutil.rmtree(root)
    repos = Repos(
        modelserve=root / "modelserve",
        batching=root / "modelserve-batching",
        logging=root / "modelserve-logging",
        monitoring=root / "modelserve-monitoring",
        onnx_only=root / "modelserve-onnx",
        sklearn_only=root / "modelserve-sklearn",
        mlserver_off=root / "mlserver-off",
        mlserver_on=root / "mlserver-on",
        part_image=REPO / "examples" / "images" / "part.jpg",
        build=build,
    )
    for model in MODELS:
        copy_model(build, model, repos.modelserve, OFF_YAML)
        copy_model(build, model, repos.batching, BATCHING_YAML)
        logging = LOGGING_YAML if model == "iris_onnx" else ""
        copy_model(build, model, repos.logging, OFF_YAML + logging)
        monitoring = MONITORING_YAML if model == "iris_onnx" else ""
        copy_model(build, model, repos.monitoring, OFF_YAML + monitoring)
    _reference_csv(repos.monitoring / "iris_onnx" / "reference.csv")
    if STATE_DIR.exists():
        shutil.rmtree(STATE_DIR)
    for model in DETECTION:
        copy_model(build, model, repos.modelserve)
    for model in PIPELINES:
        shutil.copytree(REPO / "examples" / "models" / model, repos.modelserve / model)
    for model in ONNX_ONLY:
        copy_model(build, model, repos.onnx_only)
    copy_model(build, "iris_sklearn", repos.sklearn_only)
    skops_file = build / "iris_sklearn" / "1" / "model.skops"
    _mlserver_repo(skops_file, repos.mlserver_off, batching=False)
    _mlserver_repo(skops_file, repos.mlserver_on, batching=True)
    return repos
