"""Which onnxruntime execution providers a model's session gets, with which options, and what
its operator is told about those that were skipped (model.yaml ``execution.providers``).

Pure planning: nothing here imports onnxruntime. runtimes/onnx.py hands in the providers the
installed onnxruntime offers (``get_available_providers()``) and, once the session exists, those
it really uses (``get_providers()``): a provider the build has but that cannot start (no GPU, no
CUDA libraries) is dropped by onnxruntime itself, and is reported the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from modelserve.config.execution import Execution, Provider
from modelserve.errors import ModelLoadError
from modelserve.runtimes.base import CACHE_DIR
from modelserve.types import TensorSpec

ORT_NAMES: dict[Provider, str] = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}

TENSORRT_DIR = "tensorrt"
"""Engines and timing caches, under the version folder's CACHE_DIR."""

DEFAULT_MAX_BATCH = 64
"""The server's max_batch_size for a batching model whose model.yaml sets none: the largest batch
a TensorRT optimisation profile is built for."""

ProviderOptions = dict[str, str]


@dataclass(frozen=True, slots=True)
class ProviderPlan:
    """What the session is created with, in order, and why some asked for are not in it."""

    providers: list[tuple[str, ProviderOptions]]
    notices: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.providers]

    @property
    def tensorrt(self) -> bool:
        return ORT_NAMES["tensorrt"] in self.names


def engine_dir(version_dir: Path) -> Path:
    """Where TensorRT keeps its engines for a version (a graph converted by ``accelerate: onnx``
    already lives in the version's CACHE_DIR)."""
    base = version_dir if version_dir.name == CACHE_DIR else version_dir / CACHE_DIR
    return base / TENSORRT_DIR


def tensorrt_profile(inputs: Sequence[TensorSpec], max_batch: int | None) -> dict[str, str] | None:
    """An optimisation profile from batch 1 to ``max_batch`` (default DEFAULT_MAX_BATCH) when
    every input's other dimensions are fixed: one engine, built at load, then serves every batch
    size. None when a dimension past the first varies (TensorRT then builds for the shapes it
    meets)."""
    if not inputs or max_batch == 0:
        return None
    if any(not spec.shape or spec.shape[0] != -1 or -1 in spec.shape[1:] for spec in inputs):
        return None
    largest = max_batch or DEFAULT_MAX_BATCH

    def shapes(batch: int) -> str:
        return ",".join(
            f"{spec.name}:{'x'.join(str(d) for d in (batch, *spec.shape[1:]))}" for spec in inputs
        )

    return {
        "trt_profile_min_shapes": shapes(1),
        "trt_profile_opt_shapes": shapes(largest),
        "trt_profile_max_shapes": shapes(largest),
    }


def _engine_cache(cache: Path) -> tuple[Path | None, str | None]:
    """Create TensorRT's engine cache folder; without it (the model repository is read-only, as
    KServe's storage initializer mounts it), TensorRT runs without a cache and a notice says so."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return None, (
            f"TensorRT's engine cache is off: {cache} cannot be created ({exc.strerror or exc}); "
            "engines are built again at every load"
        )
    return cache, None


def provider_options(
    provider: Provider, execution: Execution, cache: Path | None, profile: dict[str, str] | None
) -> ProviderOptions:
    """onnxruntime's options for one provider (strings, as its Python API takes them); no
    ``cache``: TensorRT keeps no engines."""
    if provider == "cpu":
        return {}
    options = {"device_id": str(execution.device_id)}
    if provider == "tensorrt":
        trt = execution.tensorrt
        options["trt_fp16_enable"] = str(trt.fp16)
        if trt.engine_cache and cache is not None:
            options |= {
                "trt_engine_cache_enable": "True",
                "trt_engine_cache_path": str(cache),
                "trt_timing_cache_enable": "True",
                "trt_timing_cache_path": str(cache),
            }
        if trt.max_workspace_mb is not None:
            options["trt_max_workspace_size"] = str(trt.max_workspace_mb * 1024 * 1024)
        options |= profile or {}
    return options


def plan_providers(
    execution: Execution,
    available: Sequence[str],
    cache: Path,
    profile: dict[str, str] | None = None,
) -> ProviderPlan:
    """The providers asked for that the installed onnxruntime has, in the order asked; a notice
    for each one it lacks. With TensorRT and its engine cache, the cache folder is created here
    (a notice, and no cache, when it cannot be). ModelLoadError when none is left."""
    providers: list[tuple[str, ProviderOptions]] = []
    notices = []
    engines: Path | None = cache
    for provider in execution.providers:
        name = ORT_NAMES[provider]
        if name not in available:
            notices.append(
                f"execution provider {provider} is not in the installed onnxruntime "
                f"(it has {', '.join(available) or 'none'}; {provider} needs onnxruntime-gpu, "
                "modelserve[gpu])"
            )
            continue
        if provider == "tensorrt" and execution.tensorrt.engine_cache:
            engines, notice = _engine_cache(cache)
            if notice:
                notices.append(notice)
        providers.append((name, provider_options(provider, execution, engines, profile)))
    if not providers:
        raise ModelLoadError(
            "none of the execution providers asked for can run here: "
            + "; ".join(notices)
            + "; add cpu to 'execution.providers' to fall back to the CPU"
        )
    return ProviderPlan(providers, notices)


def short_names(used: Sequence[str]) -> tuple[str, ...]:
    """onnxruntime's provider names as model.yaml spells them (``CUDAExecutionProvider`` ->
    ``cuda``); one model.yaml has no name for loses its suffix and is lower-cased."""
    shorts = {ort: short for short, ort in ORT_NAMES.items()}
    return tuple(
        shorts.get(name) or name.removesuffix("ExecutionProvider").lower() for name in used
    )


def fallback_notices(plan: ProviderPlan, used: Sequence[str]) -> list[str]:
    """What to tell about the session onnxruntime created: the planned providers it dropped
    (they failed to start), and where the model runs instead."""
    dropped = [name for name in plan.names if name not in used]
    if not dropped and not plan.notices:
        return []
    shorts = {ort: short for short, ort in ORT_NAMES.items()}
    notices = list(plan.notices)
    for name in dropped:
        notices.append(
            f"execution provider {shorts.get(name, name)} could not start (onnxruntime dropped "
            "it: no usable GPU or its libraries are missing)"
        )
    running = ", ".join(short_names(used)) or "none"
    notices.append(f"running on {running}")
    return notices
