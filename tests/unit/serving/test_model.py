"""LoadedModel: the signature (model.yaml merged with what the artifact says), the checks of a
request's inputs and requested outputs, the outputs cast to their declared datatypes with
their rows counted, and the Triton model configuration clients read."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelserve.codecs.tensors import v2_datatype
from modelserve.config.model import load_model_config
from modelserve.errors import InternalError, InvalidArgument, ModelLoadError
from modelserve.runtimes.base import Arrays, LoadContext, Runtime
from modelserve.runtimes.python import PythonRuntime
from modelserve.serving.model import DEFAULT_MAX_BATCH_SIZE, LoadedModel, build_loaded_model
from modelserve.types import (
    InferenceRequest,
    RequestedOutput,
    RuntimeSignature,
    Tensor,
    TensorSpec,
)
from tests.harness import write_python_model
from tests.unit.runtimes.artifacts import make_ctx

# A model that says its own signature (as an artifact would); model.yaml may add to it.
DECLARING = """
class Model:
    inputs = [
        {"name": "a", "datatype": "FP32", "shape": [-1, 3]},
        {"name": "b", "datatype": "INT64", "shape": [-1]},
    ]
    outputs = [
        {"name": "sum", "datatype": "FP32", "shape": [-1]},
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
    ]

    def predict(self, inputs):
        return {"sum": inputs["a"].sum(axis=1), "label": ["x"] * len(inputs["b"])}
"""
SILENT = """
class Model:
    def predict(self, inputs):
        return inputs
"""


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(1) as pool:
        yield pool


@pytest.fixture
def loaded(tmp_path: Path, executor: ThreadPoolExecutor) -> Iterator[Any]:
    """``loaded(source, **config)``: a LoadedModel of a python model, unloaded at the end."""
    made: list[LoadedModel] = []

    def load(source: str = DECLARING, **config: Any) -> LoadedModel:
        folder = write_python_model(tmp_path, f"m{len(made)}", source, config)
        ctx = LoadContext(folder.name, "1", folder, folder / "1", load_model_config(folder))
        model = build_loaded_model(ctx, PythonRuntime.load(ctx), "python", executor)
        made.append(model)
        return model

    yield load
    for model in made:
        model.runtime.unload()


def request(**arrays: np.ndarray) -> InferenceRequest:
    tensors = []
    for name, array in arrays.items():
        tensors.append(Tensor(name, v2_datatype(array.dtype), array.shape, array))
    return InferenceRequest("m", tuple(tensors))


A = np.zeros((2, 3), dtype=np.float32)
B = np.zeros(2, dtype=np.int64)


# ---- the signature -----------------------------------------------------------------------------


def test_the_artifact_signature_is_served_with_a_default_batch_size(loaded: Any) -> None:
    model = loaded()
    assert model.inputs == (TensorSpec("a", "FP32", (-1, 3)), TensorSpec("b", "INT64", (-1,)))
    assert [o.name for o in model.outputs] == ["sum", "label"]
    assert model.max_batch_size == DEFAULT_MAX_BATCH_SIZE
    assert (model.name, model.version, model.platform, model.runtime_name) == (
        "m0",
        "1",
        "python",
        "python",
    )


def test_model_yaml_can_narrow_but_not_contradict_the_artifact(loaded: Any) -> None:
    narrowed = loaded(max_batch_size=4, platform="custom")
    assert (narrowed.max_batch_size, narrowed.platform) == (4, "custom")
    unknown = {"inputs": [{"name": "c", "datatype": "FP32", "shape": [-1]}]}
    with pytest.raises(ModelLoadError, match="declares input 'c', but the artifact has"):
        loaded(**unknown)
    retyped = {"inputs": [{"name": "a", "datatype": "FP64", "shape": [-1, 3]}]}
    with pytest.raises(ModelLoadError, match="'a' as FP64, but the artifact has FP32"):
        loaded(**retyped)
    with pytest.raises(ModelLoadError, match="does not tell its inputs"):
        loaded(SILENT)
    fixed = {
        "max_batch_size": 2,
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [2]}],
        "outputs": [{"name": "x", "datatype": "FP32", "shape": [2]}],
    }
    with pytest.raises(ModelLoadError, match="first dimension of 'x' must be -1"):
        loaded(SILENT, **fixed)


# ---- request checks ----------------------------------------------------------------------------


def test_valid_inputs_come_back_by_name(loaded: Any) -> None:
    arrays = loaded().check_inputs(request(b=B, a=A))
    assert set(arrays) == {"a", "b"} and arrays["a"] is A and arrays["b"] is B


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"a": A, "b": B, "c": B}, r"has no input 'c'; its inputs are \['a', 'b'\]"),
        ({"a": A.astype(np.float64), "b": B}, "datatype FP64 given, model expects FP32"),
        ({"a": np.zeros((2, 4), np.float32), "b": B}, r"shape \[2, 4\] does not match"),
        ({"a": np.zeros(3, np.float32), "b": B}, r"shape \[3\] does not match"),
        ({"a": A, "b": np.zeros(3, np.int64)}, r"inputs disagree on the batch size \(2 and 3\)"),
        ({"a": A}, r"needs input\(s\) \['b'\]"),
    ],
)
def test_invalid_inputs_are_refused_with_the_reason(
    loaded: Any, arrays: dict[str, np.ndarray], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        loaded().check_inputs(request(**arrays))


def test_accepted_datatypes_are_cast_to_the_declared_one(loaded: Any) -> None:
    model = loaded(
        inputs=[
            {"name": "a", "datatype": "FP32", "shape": [-1, 3], "accept_datatypes": ["FP16"]},
            {"name": "b", "datatype": "INT64", "shape": [-1], "accept_datatypes": ["INT32"]},
        ]
    )
    half, small = np.ones((2, 3), np.float16), np.array([1, 2], np.int32)
    arrays = model.check_inputs(request(a=half, b=small))
    assert arrays["a"].dtype == np.float32 and arrays["b"].dtype == np.int64
    np.testing.assert_array_equal(arrays["b"], [1, 2])
    piped = {"a": half, "b": small}
    assert model.check_arrays(piped) == 2 and piped["a"].dtype == np.float32
    with pytest.raises(
        InvalidArgument, match=r"datatype FP64 given, model expects FP32 \(or FP16\)"
    ):
        model.check_inputs(request(a=A.astype(np.float64), b=B))


def test_only_widening_casts_may_be_accepted(loaded: Any) -> None:
    narrowing = {"name": "a", "datatype": "FP32", "shape": [-1, 3], "accept_datatypes": ["FP64"]}
    with pytest.raises(ModelLoadError, match="FP64 cannot be cast to FP32 without changing"):
        loaded(inputs=[narrowing])
    output = {"name": "sum", "datatype": "FP32", "shape": [-1], "accept_datatypes": ["FP16"]}
    with pytest.raises(ModelLoadError, match="accept_datatypes is for inputs only"):
        loaded(outputs=[output])


def test_only_the_outputs_asked_for_are_wanted(loaded: Any) -> None:
    model = loaded()
    assert model.wanted(model.check_requested(None)) is None
    both = (RequestedOutput("label"), RequestedOutput("sum"))
    assert model.wanted(model.check_requested(both)) is None
    assert model.wanted(model.check_requested(both[:1])) == frozenset({"label"})


def test_the_batch_size_is_bounded_only_for_a_batching_model(loaded: Any) -> None:
    small = loaded(max_batch_size=1)
    with pytest.raises(InvalidArgument, match="batch size 2 exceeds the model's max_batch_size 1"):
        small.check_inputs(request(a=A, b=B))
    unbatched = loaded(
        SILENT,
        max_batch_size=0,
        inputs=[{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
        outputs=[{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
    )
    rows = np.zeros((100, 2), dtype=np.float32)
    assert unbatched.check_inputs(request(x=rows))["x"] is rows


def test_requested_outputs_are_checked(loaded: Any) -> None:
    model = loaded()
    assert model.check_requested(None) == model.outputs
    assert [s.name for s in model.check_requested((RequestedOutput("label"),))] == ["label"]
    with pytest.raises(InvalidArgument, match=r"no output 'nope'; its outputs are \['label'"):
        model.check_requested((RequestedOutput("nope"),))
    assert model.requested_classes((RequestedOutput("label"),)) is None
    assert model.requested_classes((RequestedOutput("sum", {"classification": 2}),)) == {"sum": 2}
    with pytest.raises(InvalidArgument, match="unsupported type 'BYTES'"):
        model.requested_classes((RequestedOutput("label", {"classification": 2}),))
    with pytest.raises(InvalidArgument, match="non-negative integer"):
        model.requested_classes((RequestedOutput("sum", {"classification": "2"}),))


# ---- outputs -----------------------------------------------------------------------------------


def test_outputs_take_their_declared_datatype(loaded: Any) -> None:
    model = loaded()
    produced = {"sum": np.array([1.5, 2.5]), "label": np.array(["a", "é"]), "extra": B}
    sum_, label = model.build_outputs(produced, model.outputs, 2)
    assert (sum_.name, sum_.datatype, sum_.shape, sum_.data.dtype) == ("sum", "FP32", (2,), "f4")
    np.testing.assert_array_equal(sum_.data, [1.5, 2.5])
    assert label.datatype == "BYTES" and label.data.tolist() == [b"a", "é".encode()]
    (only,) = model.build_outputs(produced, model.check_requested((RequestedOutput("sum"),)), 2)
    assert only.name == "sum"


@pytest.mark.parametrize(
    ("produced", "message"),
    [
        ({"sum": np.zeros(2)}, "did not produce output 'label'"),
        ({"sum": np.zeros(3), "label": np.array(["a", "b"])}, "returned 3 rows for output 'sum'"),
        ({"sum": np.float32(1), "label": np.array(["a", "b"])}, "returned 0 rows"),
    ],
)
def test_outputs_that_break_the_contract_are_internal_errors(
    loaded: Any, produced: dict[str, Any], message: str
) -> None:
    model = loaded()
    with pytest.raises(InternalError, match=message):
        model.build_outputs(produced, model.outputs, 2)


# ---- the Triton model configuration ------------------------------------------------------------


def test_triton_config_describes_the_model(loaded: Any) -> None:
    model = loaded(
        max_batch_size=8,
        instances=2,
        max_queue_size=16,
        default_timeout_ms=250,
        dynamic_batching={"max_queue_delay_us": 100, "preferred_batch_sizes": [2, 4]},
        parameters={"threshold": 0.5},
        version_policy={"specific": [1]},
    )
    assert model.triton_config() == {
        "name": "m0",
        "platform": "python",
        "backend": "python",
        "version_policy": {"specific": {"versions": [1]}},
        "max_batch_size": 8,
        "input": [
            {"name": "a", "data_type": "TYPE_FP32", "dims": [3]},  # without the batch dimension
            {"name": "b", "data_type": "TYPE_INT64", "dims": []},
        ],
        "output": [
            {"name": "sum", "data_type": "TYPE_FP32", "dims": []},
            {"name": "label", "data_type": "TYPE_STRING", "dims": []},
        ],
        "instance_group": [{"name": "m0", "kind": "KIND_CPU", "count": 2}],
        "parameters": {"threshold": {"string_value": "0.5"}},
        "dynamic_batching": {
            "max_queue_delay_microseconds": 100,
            "preferred_batch_size": [2, 4],
            "default_queue_policy": {"max_queue_size": 16, "default_timeout_microseconds": 250_000},
        },
    }


def test_triton_config_of_an_unbatched_model_keeps_every_dimension(loaded: Any) -> None:
    model = loaded(
        SILENT,
        max_batch_size=0,
        version_policy={"all": True},
        inputs=[{"name": "x", "datatype": "UINT8", "shape": [-1, 2]}],
        outputs=[{"name": "x", "datatype": "UINT8", "shape": [-1, 2]}],
    )
    config = model.triton_config()
    assert config["max_batch_size"] == 0 and config["version_policy"] == {"all": {}}
    assert config["input"] == [{"name": "x", "data_type": "TYPE_UINT8", "dims": [-1, 2]}]
    assert "dynamic_batching" not in config
    default = loaded().triton_config()
    assert default["version_policy"] == {"latest": {"num_versions": 1}}


def test_triton_config_says_the_execution_providers_in_use(loaded: Any) -> None:
    """A runtime's providers after any fallback (the onnx runtime's, tested end to end in
    tests/e2e/test_execution_providers.py): on a GPU one, the instances are KIND_GPU."""
    plain = loaded().triton_config()
    assert "execution_providers" not in plain["parameters"]  # the python runtime has none
    model = loaded(execution={"providers": ["cuda", "cpu"], "device_id": 1})
    model.runtime.execution_providers = lambda: ("cuda", "cpu")
    config = model.triton_config()
    assert config["parameters"]["execution_providers"] == {"string_value": "cuda,cpu"}
    assert config["instance_group"] == [{"name": "m1", "kind": "KIND_GPU", "count": 1,
                                         "gpus": [1]}]  # fmt: skip
    model.runtime.execution_providers = lambda: ("cpu",)
    config = model.triton_config()
    assert config["parameters"]["execution_providers"] == {"string_value": "cpu"}
    assert config["instance_group"][0]["kind"] == "KIND_CPU"


# ---- dynamic batching by default -------------------------------------------------------------


class BusyRuntime(Runtime):
    """Spends ``fixed + per_row * rows`` seconds of CPU per call (a stand-in for a framework
    model; CPU, because the probe measures the CPU time of its calls)."""

    def __init__(self, fixed: float, per_row: float) -> None:
        self.fixed, self.per_row, self.calls = fixed, per_row, 0

    @classmethod
    def load(cls, ctx: LoadContext) -> Runtime:
        raise NotImplementedError

    def signature(self) -> RuntimeSignature:
        spec = TensorSpec("x", "FP32", (-1, 2))
        return RuntimeSignature(inputs=(spec,), outputs=(spec,), batchable=True)

    def predict(self, inputs: Arrays) -> Arrays:
        self.calls += 1
        end = time.thread_time() + self.fixed + self.per_row * inputs["x"].shape[0]
        while time.thread_time() < end:
            pass
        return {"x": inputs["x"]}


@pytest.mark.parametrize(
    ("fixed", "per_row", "config", "batching"),
    [
        (0.0005, 0.0, {}, True),  # the call costs the same for 8 rows as for 1
        (0.0, 0.0005, {}, False),  # the cost grows with the rows
        (0.0005, 0.0, {"dynamic_batching": False}, False),  # model.yaml says no
        (0.0005, 0.0, {"dynamic_batching": None}, False),
        (0.0005, 0.0, {"max_batch_size": 4}, False),  # too small a batch to merge into
    ],
)
def test_batching_is_on_by_default_where_the_call_cost_dominates(
    tmp_path: Path,
    executor: ThreadPoolExecutor,
    caplog: pytest.LogCaptureFixture,
    fixed: float,
    per_row: float,
    config: dict[str, Any],
    batching: bool,
) -> None:
    ctx = make_ctx(tmp_path / "m", **config)
    runtime = BusyRuntime(fixed, per_row)
    with caplog.at_level(logging.INFO, logger="modelserve.serving.model"):
        model = build_loaded_model(ctx, runtime, "sklearn", executor)
    assert (model.config.dynamic_batching is not None) is batching
    assert ("dynamic_batching" in model.triton_config()) is batching
    if config:
        assert runtime.calls == 0  # nothing to measure
    else:
        verdict = "on by default" if batching else "stays off"
        assert f"model 'm': dynamic batching {verdict}" in caplog.text
