"""The step graph of a pipeline, checked and planned when the pipeline loads.

Steps are wired by tensor names as in Triton's ``ensemble_scheduling``: a step's ``input_map``
maps each of its inputs to a pipeline tensor (a pipeline input or an earlier step's output),
its ``output_map`` each output it produces to a new tensor. The checks when the pipeline loads:
every tensor is produced once, every input is produced somewhere, there is no cycle, every
pipeline output is produced, transforms get inputs they know, and datatypes agree wherever they
are known (transforms say what they produce; a model step's are known once the model serves,
``check_models``).

The plan: steps are levelled by their inputs (a step runs once every tensor it needs is there);
the transforms of consecutive levels that hold no model step run together in one thread hop,
and the model steps of a level run concurrently, each through its own model's batcher.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from modelserve.config.model import ModelConfig, PipelineStep
from modelserve.errors import ModelLoadError
from modelserve.pipelines.steps import Params, Transform, resolve_transform
from modelserve.types import TensorSpec

__all__ = ["Graph", "ModelSignature", "Stage", "Step", "build_graph", "check_models"]


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    model: str | None
    """The model this step runs (None: a transform)."""
    version: str
    transform: Transform | None
    input_map: Mapping[str, str]
    """Step input -> pipeline tensor."""
    output_map: Mapping[str, str]
    """Step output -> pipeline tensor."""

    @property
    def label(self) -> str:
        kind = f"model '{self.model}'" if self.model else f"transform {self.describe()}"
        return f"step '{self.name}' ({kind})"

    def describe(self) -> str:
        return self.model or (self.transform.name if self.transform else "?")


@dataclass(frozen=True, slots=True)
class Stage:
    """Steps that run together: ``transforms`` one after the other in one thread hop (or on the
    loop when all are cheap), ``models`` concurrently."""

    transforms: tuple[Step, ...] = ()
    models: tuple[Step, ...] = ()

    @property
    def inline(self) -> bool:
        return all(s.transform is not None and s.transform.inline for s in self.transforms)


@dataclass(frozen=True, slots=True)
class Graph:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    steps: tuple[Step, ...]
    stages: tuple[Stage, ...]
    types: Mapping[str, str | None]
    """Every tensor's datatype as far as it is known without the step models."""


class ModelSignature(Protocol):
    """What ``check_models`` needs of a step's model (a LoadedModel has it)."""

    @property
    def inputs(self) -> tuple[TensorSpec, ...]: ...
    @property
    def outputs(self) -> tuple[TensorSpec, ...]: ...


def _step_names(steps: list[PipelineStep]) -> list[str]:
    counts: dict[str, int] = {}
    names = []
    for step in steps:
        base = step.name or step.model or step.transform or "step"
        counts[base] = counts.get(base, 0) + 1
        names.append(base if step.name or counts[base] == 1 else f"{base}_{counts[base]}")
    if len(set(names)) != len(names):
        raise ModelLoadError(f"step names repeat: {names}")
    return names


def _build_step(name: str, config: PipelineStep) -> Step:
    transform: Transform | None = None
    if config.transform is not None:
        cls = resolve_transform(config.transform)
        try:
            transform = cls(Params(config.transform, config.parameters))
        except ModelLoadError as exc:
            raise ModelLoadError(f"step '{name}': {exc}") from None
        known = set(cls.inputs) | set(cls.optional_inputs)
        unknown = sorted(set(config.input_map) - known)
        missing = sorted(set(cls.inputs) - set(config.input_map))
        if unknown or missing:
            raise ModelLoadError(
                f"step '{name}': transform {cls.name} takes inputs {sorted(known)}"
                + (f"; unknown {unknown}" if unknown else "")
                + (f"; missing {missing}" if missing else "")
            )
        outputs = set(transform.outputs())
        unknown = sorted(set(config.output_map) - outputs)
        if unknown:
            raise ModelLoadError(
                f"step '{name}': transform {cls.name} has no output(s) {unknown}; "
                f"it produces {sorted(outputs)}"
            )
    return Step(
        name=name,
        model=config.model,
        version=config.version or "",
        transform=transform,
        input_map=dict(config.input_map),
        output_map=dict(config.output_map),
    )


def build_graph(config: ModelConfig) -> Graph:
    """Check the steps of a ``runtime: pipeline`` config and plan them; ModelLoadError names
    the step and the tensor at fault."""
    assert config.steps is not None and config.inputs is not None and config.outputs is not None
    inputs = tuple(TensorSpec(t.name, t.datatype, tuple(t.shape)) for t in config.inputs)
    outputs = tuple(TensorSpec(t.name, t.datatype, tuple(t.shape)) for t in config.outputs)
    steps = [
        _build_step(name, step)
        for name, step in zip(_step_names(config.steps), config.steps, strict=True)
    ]
    producer: dict[str, Step | None] = {spec.name: None for spec in inputs}
    for step in steps:
        for tensor in step.output_map.values():
            if tensor in producer:
                who = producer[tensor]
                by = f"step '{who.name}'" if who else "a pipeline input"
                raise ModelLoadError(
                    f"step '{step.name}': tensor '{tensor}' is already produced by {by}"
                )
            producer[tensor] = step
    for step in steps:
        for tensor in step.input_map.values():
            if tensor not in producer:
                raise ModelLoadError(
                    f"step '{step.name}': input tensor '{tensor}' is neither a pipeline input "
                    "nor an output of a step"
                )
    for spec in outputs:
        if producer.get(spec.name) is None:
            raise ModelLoadError(f"pipeline output '{spec.name}' is not produced by any step")
    levels = _levels(steps, producer)
    ordered = sorted(steps, key=lambda s: levels[s.name])
    types = propagate(inputs, outputs, ordered, {})
    return Graph(inputs, outputs, tuple(ordered), _stages(ordered, levels), types)


def _levels(steps: list[Step], producer: Mapping[str, Step | None]) -> dict[str, int]:
    """Each step's level: 0 when it needs only pipeline inputs, else one past its latest
    producer's. A cycle is a load error."""
    levels: dict[str, int] = {}
    visiting: set[str] = set()

    def level(step: Step, path: tuple[str, ...]) -> int:
        if step.name in levels:
            return levels[step.name]
        if step.name in visiting:
            raise ModelLoadError(f"the steps form a cycle: {' -> '.join((*path, step.name))}")
        visiting.add(step.name)
        deps = [producer[t] for t in step.input_map.values()]
        value = max((level(d, (*path, step.name)) + 1 for d in deps if d is not None), default=0)
        visiting.discard(step.name)
        levels[step.name] = value
        return value

    for step in steps:
        level(step, ())
    return levels


def _stages(ordered: list[Step], levels: Mapping[str, int]) -> tuple[Stage, ...]:
    stages: list[Stage] = []
    for value in sorted(set(levels.values())):
        at = [s for s in ordered if levels[s.name] == value]
        transforms = tuple(s for s in at if s.transform is not None)
        models = tuple(s for s in at if s.model is not None)
        if stages and not stages[-1].models and not models:
            stages[-1] = Stage(stages[-1].transforms + transforms)
        else:
            stages.append(Stage(transforms, models))
    return tuple(stages)


def propagate(
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...],
    ordered: list[Step] | tuple[Step, ...],
    models: Mapping[str, ModelSignature],
) -> dict[str, str | None]:
    """Every tensor's datatype (None where unknown), checking each step's inputs on the way;
    ``models``: the model serving each model step, by step name, where known."""
    types: dict[str, str | None] = {spec.name: spec.datatype for spec in inputs}
    for step in ordered:
        given = {name: types[tensor] for name, tensor in step.input_map.items()}
        if step.transform is not None:
            try:
                produced = step.transform.output_types(given)
            except ModelLoadError as exc:
                raise ModelLoadError(f"step '{step.name}': {exc}") from None
        else:
            model = models.get(step.name)
            produced = _model_types(step, model, given) if model else {}
        for name, tensor in step.output_map.items():
            types[tensor] = produced.get(name)
    for spec in outputs:
        known = types.get(spec.name)
        if known is not None and known != spec.datatype:
            raise ModelLoadError(
                f"pipeline output '{spec.name}' is declared {spec.datatype} but its step "
                f"produces {known}"
            )
    return types


def _model_types(
    step: Step, model: ModelSignature, given: Mapping[str, str | None]
) -> dict[str, str | None]:
    inputs = {spec.name: spec for spec in model.inputs}
    outputs = {spec.name: spec for spec in model.outputs}
    unknown = sorted(set(step.input_map) - set(inputs))
    missing = sorted(set(inputs) - set(step.input_map))
    if unknown or missing:
        raise ModelLoadError(
            f"{step.label}: the model's inputs are {sorted(inputs)}"
            + (f"; the input_map names unknown {unknown}" if unknown else "")
            + (f"; it does not map {missing}" if missing else "")
        )
    for name, datatype in given.items():
        if datatype is not None and datatype != inputs[name].datatype:
            raise ModelLoadError(
                f"{step.label}: input '{name}' is {inputs[name].datatype}, but tensor "
                f"'{step.input_map[name]}' is {datatype}"
            )
    unknown = sorted(set(step.output_map) - set(outputs))
    if unknown:
        raise ModelLoadError(
            f"{step.label}: the model has no output(s) {unknown}; it has {sorted(outputs)}"
        )
    return {name: spec.datatype for name, spec in outputs.items()}


def check_models(graph: Graph, models: Mapping[str, ModelSignature]) -> str | None:
    """Why the models serving the model steps (by step name) do not fit the wiring; None when
    they do."""
    try:
        propagate(graph.inputs, graph.outputs, graph.steps, models)
    except ModelLoadError as exc:
        return str(exc)
    return None
