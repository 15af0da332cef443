"""config.pbtxt through Triton's model_config.proto: the mapping onto ModelConfig, the fields
classified, the errors; Triton's JSON model configuration; config.pbtxt text back."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelserve.config.model import load_model_config
from modelserve.config.pbtxt import (
    from_triton_json,
    load_pbtxt,
    looks_like_triton_json,
    read_pbtxt,
    to_pbtxt,
)
from modelserve.errors import ModelLoadError
from tests.triton_repo import DENSENET_PBTXT, ENSEMBLE_PBTXT, SIMPLE_PBTXT


def folder(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / name).mkdir()
    (tmp_path / name / "config.pbtxt").write_text(text)
    return tmp_path / name


def test_simple_maps_every_field(tmp_path: Path) -> None:
    mapping = load_pbtxt(folder(tmp_path, "simple", SIMPLE_PBTXT))
    config = mapping.require()
    assert config.runtime == "onnx" and config.platform == "onnxruntime_onnx"
    assert config.artifact == "model.onnx" and config.max_batch_size == 8
    assert config.inputs is not None and config.outputs is not None
    assert [(t.name, t.datatype, t.shape) for t in config.inputs] == [
        ("INPUT0", "INT32", [-1, 16]),
        ("INPUT1", "INT32", [-1, 16]),
    ]
    assert config.dynamic_batching is not None
    assert config.dynamic_batching.preferred_batch_sizes == [4, 8]
    assert config.dynamic_batching.max_queue_delay_us == 100
    assert config.max_queue_size == 32 and config.version_policy.all
    assert config.parameters == {"note": "from Triton's docs"}
    assert not mapping.ignored and not mapping.unsupported
    assert "dynamic_batching.preferred_batch_size" in mapping.mapped


def test_densenet_reshape_labels_and_ignored_fields(tmp_path: Path) -> None:
    mapping = load_pbtxt(folder(tmp_path, "densenet_onnx", DENSENET_PBTXT))
    config = mapping.require()
    assert config.inputs is not None and config.outputs is not None
    assert config.inputs[0].shape == [3, 4, 4] and config.inputs[0].reshape == [1, 3, 4, 4]
    assert config.outputs[0].labels == "densenet_labels.txt"
    assert config.instances == 2 and config.max_batch_size == 0
    assert "instance_group.kind (instances run on the CPU)" in mapping.ignored
    assert any(item.startswith("input.format") for item in mapping.ignored)


def test_model_yaml_wins_and_pbtxt_is_read_without_it(tmp_path: Path) -> None:
    model = folder(tmp_path, "simple", SIMPLE_PBTXT)
    assert load_model_config(model).max_batch_size == 8
    (model / "model.yaml").write_text("max_batch_size: 2\n")
    assert load_model_config(model).max_batch_size == 2


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('name: "simple"\nmax_batch_sise: 4\n', "max_batch_sise"),
        ('name: "other"\nplatform: "onnxruntime_onnx"\n', "does not match the model folder"),
        ('platform: "tensorrt_plan"\n', "platform 'tensorrt_plan' is not supported"),
        ('backend: "python"\n', "TritonPythonModel"),
        ("sequence_batching { max_sequence_idle_microseconds: 5 }\n", "sequence_batching"),
        ('input [ { name: "x" data_type: TYPE_BF16 dims: [1] } ]\n', "TYPE_BF16"),
        ('input [ { name: "x" data_type: TYPE_FP32 dims: [1] optional: true } ]', "optional"),
        ("max_batch_size: 4\ndynamic_batching { preferred_batch_size: [8] }\n", "exceed"),
        ("dynamic_batching { default_queue_policy { timeout_action: DELAY } }\n", "timeout_action"),
        ('platform: "ensemble"\n', "needs ensemble_scheduling with steps"),
        (
            'platform: "ensemble"\nensemble_scheduling { step [ { model_name: "m" '
            "model_version: -2 } ] }\n",
            "model_version -2",
        ),
        (
            'platform: "ensemble"\nensemble_scheduling { step [ { model_name: "m" '
            'model_namespace: "x" } ] }\n',
            "ensemble_scheduling.step.model_namespace",
        ),
    ],
)
def test_refusals_say_why(tmp_path: Path, text: str, reason: str) -> None:
    model = folder(tmp_path, "simple", text)
    with pytest.raises(ModelLoadError, match=reason) as caught:
        load_model_config(model)
    assert str(model / "config.pbtxt") in str(caught.value)


def test_an_ensemble_is_a_pipeline_wired_the_same(tmp_path: Path) -> None:
    mapping = load_pbtxt(folder(tmp_path, "ensemble", ENSEMBLE_PBTXT))
    config = mapping.require()
    assert config.runtime == "pipeline" and config.max_batch_size == 8
    assert config.steps is not None
    first, second = config.steps
    assert (first.model, first.version, second.model, second.version) == (
        "simple",
        "1",
        "simple",
        None,
    )
    assert first.input_map == {"INPUT0": "IN0", "INPUT1": "IN1"}
    assert second.output_map == {"OUTPUT0": "OUT_SUM", "OUTPUT1": "OUT_DIFF"}
    assert "ensemble_scheduling.step.output_map" in mapping.mapped and not mapping.unsupported
    unset = ENSEMBLE_PBTXT.replace("model_version: 1", "")  # proto3's 0: the latest, as -1
    (tmp_path / "again").mkdir()
    steps = load_pbtxt(folder(tmp_path / "again", "ensemble", unset)).require().steps
    assert steps is not None and steps[0].version is None


def test_python_backend_following_modelserves_api_loads(tmp_path: Path) -> None:
    text = (
        'backend: "python"\n'
        'parameters { key: "entrypoint" value: { string_value: "model:Model" } }\n'
        'parameters { key: "k" value: { string_value: "v" } }\n'
    )
    config = load_pbtxt(folder(tmp_path, "py", text)).require()
    assert config.runtime == "python" and config.entrypoint == "model:Model"
    assert config.parameters == {"k": "v"}


def test_triton_json_from_the_load_api() -> None:
    document = {
        "max_batch_size": 16,
        "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [4]}],
        "output": [{"name": "y", "data_type": "TYPE_INT64", "dims": [1]}],
    }
    assert looks_like_triton_json(document)
    assert not looks_like_triton_json({"max_batch_size": 16, "inputs": []})
    assert not looks_like_triton_json({"max_batch_size": 16})
    config = from_triton_json(document, Path("m/config parameter"))
    assert config.max_batch_size == 16
    assert config.inputs is not None and config.inputs[0].shape == [-1, 4]
    with pytest.raises(ModelLoadError, match="not a Triton model configuration"):
        from_triton_json({"input": [{"name": "x", "dims": "many"}]}, Path("m"))


def test_to_pbtxt_round_trips(tmp_path: Path) -> None:
    document = {
        "name": "m",
        "platform": "onnxruntime_onnx",
        "max_batch_size": 4,
        "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [3]}],
    }
    path = tmp_path / "config.pbtxt"
    path.write_text(to_pbtxt(document))
    proto = read_pbtxt(path)
    assert proto.name == "m" and proto.max_batch_size == 4 and list(proto.input[0].dims) == [3]


def test_empty_messages_of_mapped_fields_are_mapped(tmp_path: Path) -> None:
    """What ``repo export`` writes for a batching model with no queue limits: an empty
    ``default_queue_policy {}`` (zeros are proto3 defaults) means Triton's defaults, not an
    unsupported field."""
    text = """
name: "m"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [{ name: "x", data_type: TYPE_FP32, dims: [4] }]
output [{ name: "y", data_type: TYPE_FP32, dims: [1] }]
dynamic_batching {
  max_queue_delay_microseconds: 0
  default_queue_policy { max_queue_size: 0 default_timeout_microseconds: 0 }
}
"""
    mapping = load_pbtxt(folder(tmp_path, "m", text))
    assert not mapping.unsupported
    config = mapping.require()
    assert config.dynamic_batching is not None and config.max_queue_size == 0
