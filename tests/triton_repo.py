"""A model repository written as Triton's own documentation shows one: ``densenet_onnx`` (the
quickstart's image classifier: ``reshape``, ``label_filename``, a GPU instance group) and
``simple`` (the INT32 add/sub example, batching), each with a small ONNX model built here from
a fixed seed, an ensemble of ``simple``, plus Triton-only folders modelserve refuses with a
reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np

LABELS = ["cat", "dog", "bird", "fish", "horse"]

DENSENET_PBTXT = """
name: "densenet_onnx"
platform: "onnxruntime_onnx"
max_batch_size : 0
input [
  {
    name: "data_0"
    data_type: TYPE_FP32
    format: FORMAT_NCHW
    dims: [ 3, 4, 4 ]
    reshape { shape: [ 1, 3, 4, 4 ] }
  }
]
output [
  {
    name: "fc6_1"
    data_type: TYPE_FP32
    dims: [ 5 ]
    reshape { shape: [ 1, 5, 1, 1 ] }
    label_filename: "densenet_labels.txt"
  }
]
instance_group [ { kind: KIND_GPU count: 2 } ]
"""

SIMPLE_PBTXT = """
name: "simple"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  {
    name: "INPUT0"
    data_type: TYPE_INT32
    dims: [ 16 ]
  },
  {
    name: "INPUT1"
    data_type: TYPE_INT32
    dims: [ 16 ]
  }
]
output [
  {
    name: "OUTPUT0"
    data_type: TYPE_INT32
    dims: [ 16 ]
  },
  {
    name: "OUTPUT1"
    data_type: TYPE_INT32
    dims: [ 16 ]
  }
]
dynamic_batching {
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 100
  default_queue_policy { max_queue_size: 32 }
}
version_policy: { all { } }
parameters { key: "note" value: { string_value: "from Triton's docs" } }
"""

SEQUENCE_PBTXT = """
name: "accumulate"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
"""

PLAN_PBTXT = """
name: "plan"
platform: "tensorrt_plan"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]
"""

# Triton's ensemble: ``simple`` twice, the second step fed the first one's sum and difference,
# so OUT_SUM = 2 * IN0 and OUT_DIFF = 2 * IN1 (the first step's version named, the second the
# latest).
ENSEMBLE_PBTXT = """
name: "ensemble"
platform: "ensemble"
max_batch_size: 8
input [
  { name: "IN0" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "IN1" data_type: TYPE_INT32 dims: [ 16 ] }
]
output [
  { name: "OUT_SUM" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "OUT_DIFF" data_type: TYPE_INT32 dims: [ 16 ] }
]
ensemble_scheduling {
  step [
    {
      model_name: "simple"
      model_version: 1
      input_map { key: "INPUT0" value: "IN0" }
      input_map { key: "INPUT1" value: "IN1" }
      output_map { key: "OUTPUT0" value: "sum" }
      output_map { key: "OUTPUT1" value: "diff" }
    },
    {
      model_name: "simple"
      model_version: -1
      input_map { key: "INPUT0" value: "sum" }
      input_map { key: "INPUT1" value: "diff" }
      output_map { key: "OUTPUT0" value: "OUT_SUM" }
      output_map { key: "OUTPUT1" value: "OUT_DIFF" }
    }
  ]
}
"""

DENSENET_WEIGHTS = np.random.default_rng(7).normal(size=(48, 5)).astype(np.float32)


def densenet_scores(image: np.ndarray) -> np.ndarray:
    """What densenet_onnx answers for one [3, 4, 4] image: [5] scores."""
    return (image.reshape(1, 48) @ DENSENET_WEIGHTS).reshape(5)  # type: ignore[no-any-return]


def build_densenet(path: Path) -> None:
    from onnx import TensorProto, helper, numpy_helper, save

    nodes = [
        helper.make_node("Flatten", ["data_0"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "W"], ["scores"]),
        helper.make_node("Reshape", ["scores", "shape"], ["fc6_1"]),
    ]
    graph = helper.make_graph(
        nodes,
        "densenet_like",
        [helper.make_tensor_value_info("data_0", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("fc6_1", TensorProto.FLOAT, [1, 5, 1, 1])],
        [
            numpy_helper.from_array(DENSENET_WEIGHTS, "W"),
            numpy_helper.from_array(np.array([1, 5, 1, 1], dtype=np.int64), "shape"),
        ],
    )
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def build_simple(path: Path) -> None:
    from onnx import TensorProto, helper, save

    def value(name: str) -> object:
        return helper.make_tensor_value_info(name, TensorProto.INT32, ["batch", 16])

    graph = helper.make_graph(
        [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ],
        "simple",
        [value("INPUT0"), value("INPUT1")],
        [value("OUTPUT0"), value("OUTPUT1")],
    )
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def write_triton_repo(root: Path, refused: bool = False) -> Path:
    """densenet_onnx, simple (versions 1 and 2) and an ensemble of simple in ``root``; with
    ``refused``, also folders modelserve refuses (a TensorRT plan, Triton's python backend)."""
    densenet = root / "densenet_onnx"
    (densenet / "1").mkdir(parents=True)
    (densenet / "config.pbtxt").write_text(DENSENET_PBTXT)
    (densenet / "densenet_labels.txt").write_text("\n".join(LABELS) + "\n")
    build_densenet(densenet / "1" / "model.onnx")
    simple = root / "simple"
    for version in ("1", "2"):
        (simple / version).mkdir(parents=True)
        build_simple(simple / version / "model.onnx")
    (simple / "config.pbtxt").write_text(SIMPLE_PBTXT)
    (root / "ensemble" / "1").mkdir(parents=True)  # Triton's ensembles have an empty version
    (root / "ensemble" / "config.pbtxt").write_text(ENSEMBLE_PBTXT)
    if refused:
        for name, text in (("plan", PLAN_PBTXT), ("accumulate", SEQUENCE_PBTXT)):
            (root / name / "1").mkdir(parents=True)
            (root / name / "config.pbtxt").write_text(text)
        (root / "accumulate" / "1" / "model.py").write_text(
            "import triton_python_backend_utils as pb_utils\n\nclass TritonPythonModel:\n"
            "    def execute(self, requests):\n        return []\n"
        )
    return root
