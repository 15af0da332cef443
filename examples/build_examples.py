"""Build the binary artifacts of the example model repository from fixed seeds.

    python examples/build_examples.py [--force] [target_dir]

``target_dir`` defaults to examples/models. Each model.yaml (and the python model's model.py)
is committed; this script writes only the artifacts under ``<model>/1/``, skipping those that
already exist unless --force is given. Every ``build_*`` function takes the artifact path and
is reused by the unit tests.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

SEED = 0
N_FEATURES = 4


def _tmp(path: Path) -> Path:
    """A sibling temp path with the same suffix (xgboost picks the format from it)."""
    return path.with_name(f".tmp-{path.name}")


def classification_data(n_classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=200,
        n_features=N_FEATURES,
        n_informative=3,
        n_redundant=0,
        n_classes=n_classes,
        random_state=SEED,
    )
    return x, y


def regression_data() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_regression

    x, y = make_regression(n_samples=200, n_features=N_FEATURES, noise=0.1, random_state=SEED)
    return x, y


def fit_logistic_regression() -> object:
    from sklearn.linear_model import LogisticRegression

    x, y = classification_data()
    return LogisticRegression(max_iter=500).fit(x, y)


def build_iris_onnx(path: Path) -> None:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    model = fit_logistic_regression()
    onx = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, N_FEATURES]))],
        options={id(model): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    onx.graph.name = "iris_logistic_regression"  # skl2onnx picks a random name
    tmp = _tmp(path)
    tmp.write_bytes(onx.SerializeToString())
    os.replace(tmp, path)


def build_mlp_onnx(path: Path, sizes: tuple[int, ...] = (256, 1024, 1024, 10)) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(SEED)
    nodes, initializers = [], []
    current = "input"
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        weight = (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        bias = np.zeros(fan_out, dtype=np.float32)
        initializers += [
            numpy_helper.from_array(weight, f"w{i}"),
            numpy_helper.from_array(bias, f"b{i}"),
        ]
        last = i == len(sizes) - 2
        gemm_out = "output" if last else f"gemm{i}"
        nodes.append(helper.make_node("Gemm", [current, f"w{i}", f"b{i}"], [gemm_out]))
        if not last:
            nodes.append(helper.make_node("Relu", [gemm_out], [f"relu{i}"]))
            current = f"relu{i}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", sizes[0]])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", sizes[-1]])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    tmp = _tmp(path)
    onnx.save(model, str(tmp))
    os.replace(tmp, path)


def build_iris_sklearn(path: Path) -> None:
    import skops.io as sio

    tmp = _tmp(path)
    sio.dump(fit_logistic_regression(), tmp)
    os.replace(tmp, path)


def build_iris_xgboost(path: Path) -> None:
    import xgboost as xgb

    x, y = classification_data(n_classes=2)
    params = {"objective": "binary:logistic", "max_depth": 3, "seed": SEED, "nthread": 1}
    booster = xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=10)
    tmp = _tmp(path)
    booster.save_model(str(tmp))
    os.replace(tmp, path)


def build_iris_lightgbm(path: Path) -> None:
    import lightgbm as lgb

    x, y = regression_data()
    params = {
        "objective": "regression",
        "num_leaves": 7,
        "seed": SEED,
        "deterministic": True,
        "num_threads": 1,
        "verbose": -1,
    }
    booster = lgb.train(params, lgb.Dataset(x, label=y), num_boost_round=10)
    tmp = _tmp(path)
    booster.save_model(str(tmp))
    os.replace(tmp, path)


BUILDERS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "iris_onnx": ("model.onnx", build_iris_onnx),
    "mlp_onnx": ("model.onnx", build_mlp_onnx),
    "iris_sklearn": ("model.skops", build_iris_sklearn),
    "iris_xgboost": ("model.ubj", build_iris_xgboost),
    "iris_lightgbm": ("model.lgb.txt", build_iris_lightgbm),
}


def build_all(target: Path, force: bool = False) -> list[Path]:
    """Build every missing artifact (all of them with ``force``); returns those built."""
    built = []
    for name, (filename, build) in BUILDERS.items():
        version_dir = target / name / "1"
        path = version_dir / filename
        if path.exists() and not force:
            print(f"skip   {path} (exists; --force rebuilds)")
            continue
        version_dir.mkdir(parents=True, exist_ok=True)
        np.random.seed(SEED)
        start = time.perf_counter()
        build(path)
        print(f"built  {path} in {time.perf_counter() - start:.2f}s")
        built.append(path)
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the example model artifacts.")
    parser.add_argument("--force", action="store_true", help="rebuild existing artifacts")
    parser.add_argument(
        "target",
        nargs="?",
        type=Path,
        default=Path(__file__).resolve().parent / "models",
        help="model repository to build into (default: examples/models)",
    )
    args = parser.parse_args(argv)
    build_all(args.target, force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
