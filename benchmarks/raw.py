"""The raw in-process ceiling: the models called directly, no server, one thread.

    taskset -c 0 .venv/bin/python benchmarks/raw.py REPO --seconds 1 --out raw.json

onnxruntime sessions get the server's settings (intra_op_num_threads=1, inter_op_num_threads=1,
sequential execution, all graph optimisations); scikit-learn runs ``predict_proba`` alone and
``predict`` + ``predict_proba`` (what one request to either server computes). ``run.py`` starts
this script pinned to core 0, where the servers run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

BATCHES = (1, 8, 64)


@dataclass
class RawResult:
    model: str
    call: str
    batch: int
    calls_s: float
    rows_s: float
    us_per_call: float


def measure(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (after a short warm-up)."""
    for _ in range(20):
        fn()
    calls, start = 0, time.perf_counter()
    deadline = start + seconds
    step = 1
    while True:
        for _ in range(step):
            fn()
        calls += step
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - start)
        if now - start < seconds / 20:
            step *= 2


def onnx_session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_all(repo: Path, seconds: float) -> list[RawResult]:
    import skops.io as sio

    rng = np.random.default_rng(0)
    results: list[RawResult] = []

    def add(model: str, call: str, batch: int, fn: Callable[[], object]) -> None:
        calls_s = measure(fn, seconds)
        results.append(RawResult(model, call, batch, calls_s, calls_s * batch, 1e6 / calls_s))
        print(f"raw {model} {call} batch {batch}: {calls_s:,.0f} calls/s", file=sys.stderr)

    for model, features in (("iris_onnx", 4), ("mlp_onnx", 256)):
        session = onnx_session(repo / model / "1" / "model.onnx")
        for batch in BATCHES:
            x = rng.standard_normal((batch, features)).astype(np.float32)
            add(model, "session.run", batch, lambda s=session, x=x: s.run(None, {"input": x}))

    skops_file = repo / "iris_sklearn" / "1" / "model.skops"
    estimator = sio.load(skops_file, trusted=sio.get_untrusted_types(file=skops_file))
    for batch in BATCHES:
        x64 = rng.standard_normal((batch, 4))
        add("iris_sklearn", "predict_proba", batch, lambda x=x64: estimator.predict_proba(x))
        add(
            "iris_sklearn",
            "predict+predict_proba",
            batch,
            lambda x=x64: (estimator.predict(x), estimator.predict_proba(x)),
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path, help="modelserve repository built by run.py")
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args()
    results = run_all(args.repo, args.seconds)
    args.out.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
