"""Build the binary artifacts of the example model repository from fixed seeds.

    python examples/build_examples.py [--force] [target_dir]

    python examples/build_examples.py --image /tmp/part.jpg /tmp/models

``target_dir`` defaults to examples/models. Each model.yaml (and the python model's model.py)
is committed; this script writes only the artifacts under ``<model>/1/``, skipping those that
already exist unless --force is given, and the sample image posted to the detector: ``--image``,
by default examples/images/part.jpg (the one README.md's curl command posts; the tests and other
builds outside the checkout name their own, so that a test run writes nothing in the checkout).
Every ``build_*`` function takes the artifact path and is reused by the tests.
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


# ---- the detection example: shapes on an assembly line ---------------------------------------

DETECTOR_SIZE = 320
SHAPES = ("circle", "square", "triangle")
DETECTOR_STRIDES = (16, 32)
DETECTOR_ANCHORS = {16: ((24, 24), (40, 40), (64, 64)), 32: ((64, 64), (96, 96), (140, 140))}
DETECTOR_TRAIN_IMAGES = 200


def draw_scene(
    rng: np.random.Generator, width: int = DETECTOR_SIZE, height: int = DETECTOR_SIZE, most: int = 3
) -> tuple[object, np.ndarray, np.ndarray]:
    """A dark background with 1..``most`` bright shapes: (a PIL image, boxes [k, 4] as x1, y1,
    x2, y2 in pixels, classes [k] indexing SHAPES)."""
    from PIL import Image, ImageDraw

    grey = int(rng.integers(40, 90))
    image = Image.new("RGB", (width, height), (grey, grey, grey))
    draw = ImageDraw.Draw(image)
    boxes, classes = [], []
    for _ in range(int(rng.integers(1, most + 1))):
        shape = int(rng.integers(0, len(SHAPES)))
        side = int(rng.integers(24, min(130, width, height)))
        x0, y0 = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
        color = tuple(int(c) for c in rng.integers(150, 256, 3))
        box = (x0, y0, x0 + side, y0 + side)
        if shape == 0:
            draw.ellipse(box, fill=color)
        elif shape == 1:
            draw.rectangle(box, fill=color)
        else:
            draw.polygon([(x0 + side / 2, y0), (x0, y0 + side), (x0 + side, y0 + side)], fill=color)
        boxes.append(box)
        classes.append(shape)
    return image, np.array(boxes, dtype=np.float32), np.array(classes, dtype=np.int64)


def _conv(graph: dict[str, list], name: str, source: str, weight: np.ndarray, bias: np.ndarray,
          stride: int, relu: bool) -> str:  # fmt: skip
    from onnx import helper, numpy_helper

    graph["init"] += [numpy_helper.from_array(weight, f"{name}.w")]
    graph["init"] += [numpy_helper.from_array(bias, f"{name}.b")]
    k = weight.shape[-1]
    out = f"{name}.out"
    graph["nodes"].append(
        helper.make_node(
            "Conv",
            [source, f"{name}.w", f"{name}.b"],
            [out],
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[k // 2] * 4,
        )
    )
    if not relu:
        return out
    graph["nodes"].append(helper.make_node("Relu", [out], [f"{name}.relu"]))
    return f"{name}.relu"


def _detector_backbone(
    rng: np.random.Generator,
) -> tuple[dict[str, list], dict[int, tuple[str, int]]]:
    """Five stride-2 3x3 convolutions (He-initialised from the seed): features at strides 16
    and 32."""
    graph: dict[str, list] = {"nodes": [], "init": []}
    source, channels, taps = "images", 3, {}
    for i, width in enumerate((16, 32, 64, 96, 128)):
        weight = rng.standard_normal((width, channels, 3, 3)) * np.sqrt(2.0 / (channels * 9))
        bias = np.zeros(width, dtype=np.float32)
        source = _conv(graph, f"backbone{i}", source, weight.astype(np.float32), bias, 2, True)
        channels = width
        taps[2 ** (i + 1)] = (source, width)
    return graph, {s: taps[s] for s in DETECTOR_STRIDES}


def _ridge(x: np.ndarray, y: np.ndarray, weights: np.ndarray, lam: float) -> np.ndarray:
    xw = x * weights[:, None]
    return np.linalg.solve(xw.T @ x + lam * np.eye(x.shape[1]), xw.T @ y)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-3, 1 - 1e-3)
    return np.log(p / (1 - p))


def _fit_head(
    features: np.ndarray, scenes: list, stride: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A 3x3 convolution from ``features`` [N, C, H, W] to YOLOv5's per-anchor (x, y, w, h,
    objectness, classes) logits, fitted in closed form (ridge regression) to the scenes' boxes:
    weights [A * (5 + K), C, 3, 3] and bias."""
    n, channels, height, width = features.shape
    anchors = np.array(DETECTOR_ANCHORS[stride], dtype=np.float32)
    k, out = len(SHAPES), 5 + len(SHAPES)
    positives = []  # (image, row, column, anchor, target)
    for i, (_, boxes, classes) in enumerate(scenes):
        for box, cls in zip(boxes, classes, strict=True):
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            w, h = box[2] - box[0], box[3] - box[1]
            gx, gy = int(cx // stride), int(cy // stride)
            ratio = np.maximum(w / anchors[:, 0], anchors[:, 0] / w)
            for a in np.flatnonzero(ratio < 2.5):
                target = np.full(out, 0.02)
                target[0] = (cx / stride - gx + 0.5) / 2
                target[1] = (cy / stride - gy + 0.5) / 2
                target[2] = np.sqrt(w / anchors[a, 0]) / 2
                target[3] = np.sqrt(h / anchors[a, 1]) / 2
                target[4] = 0.95
                target[5 + cls] = 0.98
                positives.append((i, gy, gx, a, target))
    taken = {(p[0], p[1], p[2]) for p in positives}
    drawn = rng.integers(0, [n, height, width], size=(4000, 3))
    negatives = np.array([c for c in drawn if tuple(c) not in taken]).reshape(-1, 3)
    cells = np.concatenate([np.array([p[:3] for p in positives]).reshape(-1, 3), negatives])
    padded = np.pad(features, ((0, 0), (0, 0), (1, 1), (1, 1)))
    dy, dx = (d.ravel() for d in np.meshgrid(np.arange(3), np.arange(3), indexing="ij"))
    taps = padded[cells[:, :1], :, cells[:, 1:2] + dy, cells[:, 2:3] + dx]  # [S, 9, C]
    x = np.concatenate([taps.reshape(len(cells), -1), np.ones((len(cells), 1))], axis=1)
    x = x.astype(np.float64)
    fitted = np.zeros((x.shape[1], len(anchors), out))
    is_positive = np.zeros((len(cells), len(anchors)))
    for row, p in enumerate(positives):
        is_positive[row, p[3]] = 1
    balance = (len(cells) - len(positives)) / max(1, len(positives)) * 0.25
    weights = np.where(is_positive.any(axis=1), balance, 1.0)
    fitted[:, :, 4] = _ridge(x, _logit(np.where(is_positive > 0, 0.95, 0.02)), weights, 1.0)
    for a in range(len(anchors)):
        rows = [r for r, p in enumerate(positives) if p[3] == a]
        if rows:
            target = _logit(np.stack([positives[r][4] for r in rows]))
            solved = _ridge(x[rows], target, np.ones(len(rows)), 10.0)
            fitted[:, a, :4], fitted[:, a, 5:] = solved[:, :4], solved[:, 5:]
    flat = fitted.reshape(x.shape[1], -1)  # rows: tap * C + channel, then the bias
    weight = flat[:-1].reshape(3, 3, channels, -1).transpose(3, 2, 0, 1)
    assert k == len(SHAPES)
    return weight.astype(np.float32), flat[-1].astype(np.float32)


def _yolo_decode(graph: dict[str, list], raw: str, stride: int, size: int) -> str:
    """[N, A * (5 + K), H, W] logits -> [N, A * H * W, 5 + K] as YOLOv5 exports them: sigmoid,
    centres (2s - 0.5 + grid) * stride, sizes (2s)^2 * anchor, pixel units of the input."""
    from onnx import helper, numpy_helper

    anchors = np.array(DETECTOR_ANCHORS[stride], dtype=np.float32)
    cells = size // stride
    out = 5 + len(SHAPES)
    name = f"head{stride}"
    ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
    grid = np.stack([xs, ys], axis=-1).reshape(1, 1, cells, cells, 2).astype(np.float32)
    constants = {
        f"{name}.shape5": np.array([-1, len(anchors), out, cells, cells], dtype=np.int64),
        f"{name}.grid": (grid - 0.5) * stride,
        f"{name}.anchors": anchors.reshape(1, len(anchors), 1, 1, 2) * 4,
        f"{name}.two_stride": np.array(2.0 * stride, dtype=np.float32),
        f"{name}.shape3": np.array([-1, len(anchors) * cells * cells, out], dtype=np.int64),
        f"{name}.s0": np.array([0], dtype=np.int64),
        f"{name}.s2": np.array([2], dtype=np.int64),
        f"{name}.s4": np.array([4], dtype=np.int64),
        f"{name}.end": np.array([out], dtype=np.int64),
        f"{name}.axis": np.array([4], dtype=np.int64),
    }
    graph["init"] += [numpy_helper.from_array(v, k) for k, v in constants.items()]
    n = f"{name}."
    nodes = [
        helper.make_node("Reshape", [raw, n + "shape5"], [n + "r5"]),
        helper.make_node("Transpose", [n + "r5"], [n + "t"], perm=[0, 1, 3, 4, 2]),
        helper.make_node("Sigmoid", [n + "t"], [n + "s"]),
        helper.make_node("Slice", [n + "s", n + "s0", n + "s2", n + "axis"], [n + "sxy"]),
        helper.make_node("Slice", [n + "s", n + "s2", n + "s4", n + "axis"], [n + "swh"]),
        helper.make_node("Slice", [n + "s", n + "s4", n + "end", n + "axis"], [n + "conf"]),
        helper.make_node("Mul", [n + "sxy", n + "two_stride"], [n + "xy0"]),
        helper.make_node("Add", [n + "xy0", n + "grid"], [n + "xy"]),
        helper.make_node("Mul", [n + "swh", n + "swh"], [n + "wh0"]),
        helper.make_node("Mul", [n + "wh0", n + "anchors"], [n + "wh"]),
        helper.make_node("Concat", [n + "xy", n + "wh", n + "conf"], [n + "cat"], axis=4),
        helper.make_node("Reshape", [n + "cat", n + "shape3"], [n + "out"]),
    ]
    graph["nodes"] += nodes
    return n + "out"


def build_detector_onnx(path: Path) -> None:
    """A small convolutional detector of circles, squares and triangles with a YOLOv5-style
    output: ``images`` FP32 [N, 3, 320, 320] (RGB scaled to 0..1) -> ``output0`` FP32
    [N, 1500, 8] candidates (cx, cy, w, h in input pixels, objectness, 3 class scores).

    The backbone's weights are random from the seed; the heads are fitted in closed form on
    200 generated scenes (features from onnxruntime, ridge regression in numpy), a few seconds
    of work without a deep-learning framework. It finds a lone shape's box (IoU > 0.5) about
    two times in three, and its class half of the time: an example of the serving path, not a
    model to rely on."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    rng = np.random.default_rng(SEED)
    graph, taps = _detector_backbone(rng)
    size = DETECTOR_SIZE
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, size, size])
    probe = helper.make_graph(
        graph["nodes"],
        "detector_backbone",
        [images],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name, _ in taps.values()],
        initializer=graph["init"],
    )
    model = helper.make_model(probe, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])
    scenes = [draw_scene(rng) for _ in range(DETECTOR_TRAIN_IMAGES)]
    pixels = np.stack([np.asarray(s[0]) for s in scenes]).astype(np.float32) / 255
    batches = [
        session.run(None, {"images": pixels[i : i + 20].transpose(0, 3, 1, 2)})
        for i in range(0, len(scenes), 20)
    ]
    outputs = []
    for index, (stride, (source, _)) in enumerate(taps.items()):
        features = np.concatenate([b[index] for b in batches])
        weight, bias = _fit_head(features, scenes, stride, rng)
        raw = _conv(graph, f"head{stride}.conv", source, weight, bias, 1, False)
        outputs.append(_yolo_decode(graph, raw, stride, DETECTOR_SIZE))
    graph["nodes"].append(helper.make_node("Concat", outputs, ["output0"], axis=1))
    candidates = sum(len(DETECTOR_ANCHORS[s]) * (size // s) ** 2 for s in DETECTOR_STRIDES)
    shape = ["N", candidates, 5 + len(SHAPES)]
    output = helper.make_tensor_value_info("output0", TensorProto.FLOAT, shape)
    final = helper.make_graph(
        graph["nodes"], "shapes_detector", [images], [output], initializer=graph["init"]
    )
    model = helper.make_model(final, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    tmp = _tmp(path)
    onnx.save(model, str(tmp))
    os.replace(tmp, path)


PART_IMAGE = Path(__file__).resolve().parent / "images" / "part.jpg"


def build_part_image(path: Path = PART_IMAGE) -> None:
    """A 640x480 scene of shapes to post to the detector (JPEG), by default
    ``examples/images/part.jpg``."""
    image, _, _ = draw_scene(np.random.default_rng(SEED + 1), 640, 480, most=3)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")  # builds may run side by side
    image.save(tmp, format="JPEG", quality=90)  # type: ignore[attr-defined]
    os.replace(tmp, path)


BUILDERS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "iris_onnx": ("model.onnx", build_iris_onnx),
    "mlp_onnx": ("model.onnx", build_mlp_onnx),
    "iris_sklearn": ("model.skops", build_iris_sklearn),
    "iris_xgboost": ("model.ubj", build_iris_xgboost),
    "iris_lightgbm": ("model.lgb.txt", build_iris_lightgbm),
    "detector_onnx": ("model.onnx", build_detector_onnx),
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
    parser.add_argument(
        "--image",
        type=Path,
        default=PART_IMAGE,
        help="where to write the sample image for the detector (default: examples/images/part.jpg)",
    )
    args = parser.parse_args(argv)
    build_all(args.target, force=args.force)
    if args.force or not args.image.exists():
        build_part_image(args.image)
        print(f"built  {args.image}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
