"""NVIDIA Triton (through PyTriton) serving the benchmark's models, for `make bench`.

Run with the PyTriton venv's interpreter (``.bench/pytriton-venv``, tools.ensure_pytriton):

    python benchmarks/pytriton_server.py BUILD MLSERVER_REPO --http-port P --grpc-port G \
        --metrics-port M --batching off|on

PyTriton starts tritonserver (bundled in the wheel) and binds Python functions to it through
Triton's Python backend: every request goes tritonserver -> the backend stub -> this process (shared
memory) and back. The models are the same artifacts modelserve serves, with the same tensor names:

- ``iris_onnx``: ``BUILD/iris_onnx/1/model.onnx`` in onnxruntime (one thread, all graph
  optimisations, as modelserve's onnx runtime); FP32 ``input`` [-1, 4] -> ``label``,
  ``probabilities``;
- ``mlp_onnx``: the MLP, FP32 ``input`` [-1, 256] -> ``output`` [-1, 10];
- ``iris_sklearn``: the same fitted estimator from the MLServer repository's ``model.joblib``,
  FP64 ``input`` -> ``label`` (predict) and ``probabilities`` (predict_proba), the same two calls
  one modelserve request makes.

Every model has ``max_batch_size: 64``; ``--batching on`` adds Triton's dynamic batcher with
``max_queue_delay_microseconds: 500`` (the same settings as modelserve's and MLServer's batching
rows), ``off`` has no dynamic batcher (each request runs alone). A 1-D output (``label``) is
declared with shape (1,) per row, since Triton wants at least one non-batch dimension: answers
carry [n, 1] where modelserve's carry [n].
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

MAX_BATCH_SIZE = 64
QUEUE_DELAY_US = 500


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _iris_onnx(build: Path) -> Any:
    session = _session(build / "iris_onnx" / "1" / "model.onnx")

    @batch
    def infer(input: np.ndarray) -> dict[str, np.ndarray]:
        label, probabilities = session.run(None, {"input": input})
        return {"label": label.reshape(-1, 1), "probabilities": probabilities}

    return infer


def _mlp_onnx(build: Path) -> Any:
    session = _session(build / "mlp_onnx" / "1" / "model.onnx")

    @batch
    def infer(input: np.ndarray) -> dict[str, np.ndarray]:
        (output,) = session.run(None, {"input": input})
        return {"output": output}

    return infer


def _iris_sklearn(mlserver_repo: Path) -> Any:
    estimator = joblib.load(mlserver_repo / "iris_sklearn" / "model.joblib")

    @batch
    def infer(input: np.ndarray) -> dict[str, np.ndarray]:
        label = np.asarray(estimator.predict(input)).reshape(-1, 1)
        return {"label": label, "probabilities": estimator.predict_proba(input)}

    return infer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path, help="examples/build_examples.py output folder")
    parser.add_argument("mlserver_repo", type=Path, help="the repository with model.joblib")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--batching", choices=("off", "on"), default="off")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    batcher = DynamicBatcher(max_queue_delay_microseconds=QUEUE_DELAY_US)
    config = ModelConfig(
        max_batch_size=MAX_BATCH_SIZE,
        batcher=batcher if args.batching == "on" else None,  # type: ignore[arg-type]
    )
    triton_config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.http_port,
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        allow_metrics=False,
        log_verbose=0,
    )
    # PyTriton 0.7 restricts Triton's shared-memory, model-repository, statistics, trace and
    # logging gRPC protocols to a generated token by default; perf_analyzer uses some of them
    # and sends no token ("This protocol is restricted"). Loopback only: no restriction.
    security = TritonSecurityConfig(restricted_endpoints=[])
    with Triton(config=triton_config, security_config=security) as triton:
        triton.bind(
            model_name="iris_onnx",
            infer_func=_iris_onnx(args.build),
            inputs=[Tensor(name="input", dtype=np.float32, shape=(4,))],
            outputs=[
                Tensor(name="label", dtype=np.int64, shape=(1,)),
                Tensor(name="probabilities", dtype=np.float32, shape=(3,)),
            ],
            config=config,
        )
        triton.bind(
            model_name="mlp_onnx",
            infer_func=_mlp_onnx(args.build),
            inputs=[Tensor(name="input", dtype=np.float32, shape=(256,))],
            outputs=[Tensor(name="output", dtype=np.float32, shape=(10,))],
            config=config,
        )
        triton.bind(
            model_name="iris_sklearn",
            infer_func=_iris_sklearn(args.mlserver_repo),
            inputs=[Tensor(name="input", dtype=np.float64, shape=(4,))],
            outputs=[
                Tensor(name="label", dtype=np.int64, shape=(1,)),
                Tensor(name="probabilities", dtype=np.float64, shape=(3,)),
            ],
            config=config,
        )
        triton.serve()


if __name__ == "__main__":
    main()
