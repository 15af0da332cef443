"""Execution providers by configuration: what a session is created with for each installed
onnxruntime (CPU-only, or onnxruntime-gpu's list), the options of TensorRT and CUDA, and the
notices for what was skipped or dropped. No GPU is needed: onnxruntime is not called."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from modelserve.config.execution import Execution
from modelserve.config.model import ModelConfig
from modelserve.errors import ModelLoadError
from modelserve.runtimes.onnx_providers import (
    engine_dir,
    fallback_notices,
    plan_providers,
    tensorrt_profile,
)
from modelserve.types import TensorSpec

GPU_BUILD = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
CPU_BUILD = ["AzureExecutionProvider", "CPUExecutionProvider"]


def execution(**fields: object) -> Execution:
    return ModelConfig.model_validate({"execution": fields}).execution


def test_the_issues_form_and_the_mode_alone_both_parse() -> None:
    asked = execution(
        providers=["tensorrt", "cuda", "cpu"], tensorrt={"fp16": True, "engine_cache": True}
    )
    assert asked.providers == ("tensorrt", "cuda", "cpu") and asked.mode == "auto"
    assert asked.tensorrt.fp16 and asked.tensorrt.engine_cache and asked.gpu
    assert ModelConfig(execution="process").execution.mode == "process"
    assert not ModelConfig().execution.gpu
    with pytest.raises(ValidationError, match="each at most once"):
        execution(providers=["cuda", "cuda"])
    with pytest.raises(ValidationError, match="mode 'process' takes none"):
        execution(mode="process", providers=["cuda", "cpu"])
    with pytest.raises(ValidationError, match="tensorrt"):
        execution(providers=["tensorrt"], tensorrt={"fp61": True})
    with pytest.raises(ValidationError):
        execution(providers=["rocm", "cpu"])


def test_gpu_build_gets_every_provider_with_its_options(tmp_path: Path) -> None:
    asked = execution(
        providers=["tensorrt", "cuda", "cpu"],
        device_id=1,
        tensorrt={"fp16": True, "max_workspace_mb": 512},
    )
    cache = engine_dir(tmp_path / "7")
    assert cache == tmp_path / "7" / ".modelserve" / "tensorrt"
    profile = tensorrt_profile([TensorSpec("input", "FP32", (-1, 256))], 32)
    plan = plan_providers(asked, GPU_BUILD, cache, profile)
    assert plan.names == GPU_BUILD and plan.notices == [] and plan.tensorrt
    trt, cuda, cpu = (options for _, options in plan.providers)
    assert trt == {
        "device_id": "1",
        "trt_fp16_enable": "True",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(cache),
        "trt_max_workspace_size": str(512 * 1024 * 1024),
        "trt_profile_min_shapes": "input:1x256",
        "trt_profile_opt_shapes": "input:32x256",
        "trt_profile_max_shapes": "input:32x256",
    }
    assert cuda == {"device_id": "1"} and cpu == {}
    assert fallback_notices(plan, GPU_BUILD) == []  # everything started


def test_the_engine_cache_folder_is_made_and_its_absence_said(tmp_path: Path) -> None:
    """The cache folder is created when TensorRT is planned; where it cannot be (a read-only
    repository, as KServe mounts one; here a file in its way, which stops root too), TensorRT
    runs without a cache and the notice says so, instead of the version failing to load."""
    asked = execution(providers=["tensorrt", "cuda", "cpu"])
    cache = engine_dir(tmp_path / "7")
    plan = plan_providers(asked, GPU_BUILD, cache)
    assert cache.is_dir() and plan.notices == []
    assert plan.providers[0][1]["trt_engine_cache_path"] == str(cache)

    (tmp_path / "8").write_text("not a folder")
    blocked = engine_dir(tmp_path / "8")
    plan = plan_providers(asked, GPU_BUILD, blocked)
    assert plan.tensorrt and plan.names == GPU_BUILD
    trt = plan.providers[0][1]
    assert not any(key.startswith(("trt_engine_cache", "trt_timing_cache")) for key in trt)
    (notice,) = plan.notices
    assert notice.startswith(f"TensorRT's engine cache is off: {blocked} cannot be created")
    assert fallback_notices(plan, GPU_BUILD) == [notice, "running on tensorrt, cuda, cpu"]

    off = execution(providers=["tensorrt", "cpu"], tensorrt={"engine_cache": False})
    assert plan_providers(off, GPU_BUILD, blocked).notices == []  # no cache asked: nothing to say


def test_missing_providers_fall_back_to_the_next_with_notices(tmp_path: Path) -> None:
    asked = execution(providers=["tensorrt", "cuda", "cpu"], tensorrt={"fp16": True})
    plan = plan_providers(asked, CPU_BUILD, tmp_path)
    assert plan.names == ["CPUExecutionProvider"] and not plan.tensorrt
    assert len(plan.notices) == 2
    assert all(
        "not in the installed onnxruntime" in n and "modelserve[gpu]" in n for n in plan.notices
    )
    notices = fallback_notices(plan, ["CPUExecutionProvider"])
    assert notices[-1] == "running on cpu"

    # onnxruntime-gpu installed, but CUDA cannot start: onnxruntime drops it, and it is said
    plan = plan_providers(execution(providers=["cuda", "cpu"]), GPU_BUILD, tmp_path)
    notices = fallback_notices(plan, ["CPUExecutionProvider"])
    assert notices == [
        "execution provider cuda could not start (onnxruntime dropped it: no usable GPU or its "
        "libraries are missing)",
        "running on cpu",
    ]

    with pytest.raises(ModelLoadError, match=r"add cpu to 'execution\.providers'"):
        plan_providers(execution(providers=["tensorrt", "cuda"]), CPU_BUILD, tmp_path)


def test_tensorrt_profiles_only_for_fixed_dimensions_past_the_batch(tmp_path: Path) -> None:
    fixed = [TensorSpec("a", "FP32", (-1, 3, 8)), TensorSpec("b", "INT64", (-1, 2))]
    assert tensorrt_profile(fixed, None) == {
        "trt_profile_min_shapes": "a:1x3x8,b:1x2",
        "trt_profile_opt_shapes": "a:64x3x8,b:64x2",
        "trt_profile_max_shapes": "a:64x3x8,b:64x2",
    }
    assert tensorrt_profile([TensorSpec("a", "FP32", (-1, -1))], 8) is None
    assert tensorrt_profile([TensorSpec("a", "FP32", (1, 4))], 8) is None
    assert tensorrt_profile(fixed, 0) is None
    assert engine_dir(tmp_path / "3" / ".modelserve") == tmp_path / "3" / ".modelserve" / "tensorrt"
    no_cache = execution(providers=["tensorrt", "cpu"], tensorrt={"engine_cache": False})
    plan = plan_providers(no_cache, GPU_BUILD, tmp_path)
    assert "trt_engine_cache_enable" not in plan.providers[0][1]


def test_short_names_are_model_yaml_names() -> None:
    from modelserve.runtimes.onnx_providers import short_names

    used = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert short_names(used) == ("tensorrt", "cuda", "cpu")
    assert short_names(["OpenVINOExecutionProvider"]) == ("openvino",)
