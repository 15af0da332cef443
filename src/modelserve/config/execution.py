"""model.yaml's ``execution``: where predict runs (``mode``), and for ONNX graphs the execution
providers onnxruntime tries in order, with their options.

``execution: process`` (a string) is short for ``execution: {mode: process}``; the providers
form is ``execution: {providers: [tensorrt, cuda, cpu], tensorrt: {fp16: true, engine_cache:
true}}``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ExecutionMode = Literal["auto", "thread", "inline", "process"]
Provider = Literal["tensorrt", "cuda", "cpu"]

CPU_ONLY: tuple[Provider, ...] = ("cpu",)


class TensorRTOptions(BaseModel):
    """Options of onnxruntime's TensorRT execution provider."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fp16: bool = Field(
        default=False,
        description="Let TensorRT run layers in FP16 where it is faster (trt_fp16_enable).",
    )
    engine_cache: bool = Field(
        default=True,
        description="Keep the engines TensorRT builds at load under "
        "<version>/.modelserve/tensorrt/, so that the next load of the same graph reuses them "
        "instead of building again (minutes for a large graph).",
    )
    max_workspace_mb: int | None = Field(
        default=None,
        ge=1,
        description="Most GPU memory (MiB) TensorRT may use while building; left out: "
        "onnxruntime's default.",
    )


def mode_or_mapping(schema: dict[str, Any]) -> None:
    """The schema editors check model.yaml with says that a mode alone is accepted too
    (Execution._mode_alone)."""
    mode = {"type": "string", "enum": ["auto", "thread", "inline", "process"]}
    ref = {key: schema.pop(key) for key in ("$ref", "allOf", "anyOf") if key in schema}
    schema["anyOf"] = [mode, *ref.get("anyOf", []), *ref.get("allOf", [])]
    if "$ref" in ref:
        schema["anyOf"].append({"$ref": ref["$ref"]})


class Execution(BaseModel):
    """Where predict runs, and which execution providers an ONNX graph runs on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: ExecutionMode = Field(
        default="auto",
        description="'thread' on the executor pool, 'inline' on the event loop, 'auto' inline "
        "once predict reliably takes under 100 µs (one instance only), 'process' in "
        "`instances` worker processes (for GIL-bound models).",
    )
    providers: tuple[Provider, ...] = Field(
        default=CPU_ONLY,
        min_length=1,
        description="onnx runtime (and accelerate: onnx): onnxruntime's execution providers in "
        "order of preference. One that the installed onnxruntime lacks (onnxruntime-gpu, extra "
        "'gpu', has tensorrt and cuda) or that cannot start is skipped with a warning in the "
        "log and the repository index; the load fails only when none is left.",
    )
    device_id: int = Field(
        default=0, ge=0, description="The GPU the cuda and tensorrt providers use."
    )
    tensorrt: TensorRTOptions = Field(default_factory=TensorRTOptions)

    @model_validator(mode="before")
    @classmethod
    def _mode_alone(cls, value: Any) -> Any:
        return {"mode": value} if isinstance(value, str) else value

    @field_validator("providers")
    @classmethod
    def _distinct(cls, value: tuple[Provider, ...]) -> tuple[Provider, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"providers: each at most once, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _providers_in_the_server(self) -> Execution:
        if self.mode == "process" and self.providers != CPU_ONLY:
            raise ValueError(
                "execution providers run in the server process: mode 'process' takes none"
            )
        return self

    @property
    def gpu(self) -> bool:
        """Whether a GPU provider is asked for."""
        return self.providers != CPU_ONLY
