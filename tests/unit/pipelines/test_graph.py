"""The step graph: wiring checks, datatypes, the plan of stages, model steps' fit."""

from __future__ import annotations

from typing import Any

import pytest

from modelserve.config.model import ModelConfig
from modelserve.errors import ModelLoadError
from modelserve.pipelines.graph import build_graph, check_models
from modelserve.types import TensorSpec

DETECTOR: dict[str, Any] = {
    "runtime": "pipeline",
    "max_batch_size": 4,
    "inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1, 1]}],
    "outputs": [
        {"name": "boxes", "datatype": "FP32", "shape": [-1, -1, 4]},
        {"name": "count", "datatype": "INT32", "shape": [-1]},
    ],
    "steps": [
        {"transform": "image_decode", "input_map": {"images": "image"},
         "output_map": {"images": "rgb"}},
        {"transform": "resize", "parameters": {"size": 32, "mode": "letterbox"},
         "input_map": {"images": "rgb"}, "output_map": {"images": "small", "geometry": "geo"}},
        {"transform": "normalize", "parameters": {"scale": 0.5}, "input_map": {"images": "small"},
         "output_map": {"images": "x"}},
        {"name": "detect", "model": "det", "input_map": {"images": "x"},
         "output_map": {"output0": "raw"}},
        {"transform": "nms", "input_map": {"predictions": "raw", "geometry": "geo"},
         "output_map": {"boxes": "boxes", "count": "count"}},
    ],
}  # fmt: skip


def config(**changes: Any) -> ModelConfig:
    return ModelConfig.model_validate({**DETECTOR, **changes})


def with_step(index: int, **changes: Any) -> ModelConfig:
    steps = [dict(s) for s in DETECTOR["steps"]]
    steps[index] = {**steps[index], **changes}
    return config(steps=steps)


class Model:
    def __init__(self, inputs: list[tuple[str, str]], outputs: list[tuple[str, str]]) -> None:
        self.inputs = tuple(TensorSpec(n, d, (-1,)) for n, d in inputs)
        self.outputs = tuple(TensorSpec(n, d, (-1,)) for n, d in outputs)


def test_the_plan_groups_transforms_into_one_hop_around_the_model() -> None:
    graph = build_graph(config())
    plan = [
        ([s.name for s in stage.transforms], [s.name for s in stage.models])
        for stage in graph.stages
    ]
    assert plan == [(["image_decode", "resize", "normalize"], []), ([], ["detect"]), (["nms"], [])]
    assert graph.types["x"] == "FP32" and graph.types["raw"] is None


def test_independent_steps_share_a_stage() -> None:
    steps = [
        {"model": "a", "input_map": {"x": "in"}, "output_map": {"y": "a_out"}},
        {"model": "b", "input_map": {"x": "in"}, "output_map": {"y": "b_out"}},
        {"transform": "threshold", "input_map": {"values": "in"}, "output_map": {"mask": "m"}},
    ]
    graph = build_graph(
        ModelConfig.model_validate(
            {
                "runtime": "pipeline",
                "inputs": [{"name": "in", "datatype": "FP32", "shape": [-1, 2]}],
                "outputs": [{"name": "m", "datatype": "BOOL", "shape": [-1, 2]}],
                "steps": steps,
            }
        )
    )
    assert len(graph.stages) == 1
    assert [s.name for s in graph.stages[0].models] == ["a", "b"]
    assert graph.stages[0].inline  # threshold is cheap


@pytest.mark.parametrize(
    ("changed", "message"),
    [
        (with_step(1, input_map={"images": "nowhere"}), "input tensor 'nowhere' is neither"),
        (with_step(2, output_map={"images": "rgb"}), "'rgb' is already produced by step"),
        (with_step(2, output_map={"images": "image"}), "already produced by a pipeline input"),
        (with_step(0, transform="blur"), "unknown transform 'blur'"),
        (with_step(1, parameters={"size": 32, "mode": "zoom"}), "step 'resize': resize param"),
        (with_step(1, input_map={"pixels": "rgb"}), "takes inputs \\['images'\\]; unknown"),
        (with_step(0, output_map={"frames": "rgb"}), "has no output\\(s\\) \\['frames'\\]"),
        (with_step(4, output_map={"boxes": "boxes"}), "output 'count' is not produced"),
        (with_step(2, input_map={"images": "image"}), "normalize input 'images' must be one of"),
        (
            config(outputs=[{"name": "count", "datatype": "INT64", "shape": [-1]}]),
            "output 'count' is declared INT64 but its step produces INT32",
        ),
    ],
)
def test_wiring_mistakes_are_load_errors(changed: ModelConfig, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        build_graph(changed)


def test_a_cycle_is_a_load_error() -> None:
    steps = [
        {"name": "one", "model": "a", "input_map": {"x": "t2"}, "output_map": {"y": "t1"}},
        {"name": "two", "model": "a", "input_map": {"x": "t1"}, "output_map": {"y": "t2"}},
        {"transform": "threshold", "input_map": {"values": "t2"}, "output_map": {"mask": "out"}},
    ]
    cyclic = ModelConfig.model_validate(
        {
            "runtime": "pipeline",
            "inputs": [{"name": "in", "datatype": "FP32", "shape": [-1]}],
            "outputs": [{"name": "out", "datatype": "BOOL", "shape": [-1]}],
            "steps": steps,
        }
    )
    with pytest.raises(ModelLoadError, match=r"cycle: .*(one -> two -> one|two -> one -> two)"):
        build_graph(cyclic)


def test_step_models_are_checked_against_the_wiring() -> None:
    graph = build_graph(config())
    fits = Model([("images", "FP32")], [("output0", "FP32")])
    assert check_models(graph, {"detect": fits}) is None
    reason = check_models(graph, {"detect": Model([("images", "FP16")], [("output0", "FP32")])})
    assert reason == ("step 'detect' (model 'det'): input 'images' is FP16, but tensor 'x' is FP32")
    reason = check_models(graph, {"detect": Model([("input", "FP32")], [("output0", "FP32")])})
    assert reason is not None and "unknown ['images']; it does not map ['input']" in reason
    reason = check_models(graph, {"detect": Model([("images", "FP32")], [("out", "FP32")])})
    assert reason is not None and "has no output(s) ['output0']" in reason
    reason = check_models(graph, {"detect": Model([("images", "FP32")], [("output0", "INT8")])})
    assert reason is not None and "nms input 'predictions' must be one of" in reason


def test_config_keys_of_a_pipeline() -> None:
    with pytest.raises(ValueError, match="'steps' need 'runtime: pipeline'"):
        ModelConfig.model_validate({"steps": DETECTOR["steps"]})
    with pytest.raises(ValueError, match="needs 'inputs' and 'outputs'"):
        config(inputs=None)
    with pytest.raises(ValueError, match="dynamic_batching, instances: not used by a pipeline"):
        config(dynamic_batching={}, instances=2)
    with pytest.raises(ValueError, match="exactly one of 'model' or 'transform'"):
        with_step(0, model="m")
    with pytest.raises(ValueError, match="'parameters' are for transforms"):
        with_step(3, parameters={"k": 1})
