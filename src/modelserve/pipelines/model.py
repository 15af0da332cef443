"""``runtime: pipeline``: a model kind of the repository. ``PipelineKind`` builds a version from
model.yaml (its graph checked and planned, graph.py), served by a ``PipelineRunner``.

A pipeline version is a loaded model like any other: its own metadata (platform ``ensemble``,
as Triton's), Triton configuration (``ensemble_scheduling`` lists its model steps, so Triton
tools find the composing models; the whole graph, transforms included, is the ``pipeline``
parameter), statistics and metrics. It depends on its step models: the lifecycle keeps it
UNAVAILABLE, with the reason, while one of them is not READY or does not fit its wiring.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from modelserve.config.model import ModelConfig
from modelserve.pipelines.graph import Graph, build_graph, check_models
from modelserve.pipelines.runner import PipelineRunner, StepCall
from modelserve.runtimes.base import LoadContext
from modelserve.scheduling.cache import CachePartition
from modelserve.serving.model import Dependency, LoadedModel, max_batch_size

__all__ = ["PIPELINE_PLATFORM", "PipelineKind", "PipelineModel"]

PIPELINE_PLATFORM = "ensemble"
"""The platform Triton reports for an ensemble; clients and perf_analyzer look for it."""


@dataclass(slots=True, kw_only=True)
class PipelineModel(LoadedModel):
    graph: Graph
    _step_dependencies: dict[str, Dependency] = field(init=False)
    _step_models: tuple[LoadedModel, ...] = field(init=False, default=())
    _steps_deterministic: bool = field(init=False, default=True)

    def __post_init__(self) -> None:
        LoadedModel.__post_init__(self)
        self._step_dependencies = {
            step.name: Dependency(step.model, step.version, f"step '{step.name}'")
            for step in self.graph.steps
            if step.model is not None
        }

    def dependencies(self) -> tuple[Dependency, ...]:
        return tuple(self._step_dependencies.values())

    def check_dependencies(self, models: Mapping[Dependency, LoadedModel]) -> str | None:
        by_step = {step: models[dep] for step, dep in self._step_dependencies.items()}
        serving = tuple(by_step.values())
        if self.cache is not None and serving != self._step_models:
            self.cache.clear()  # answers of other step versions
        self._step_models = serving
        self._steps_deterministic = all(m.config.deterministic for m in serving)
        return check_models(self.graph, by_step)

    def answer_cache(self) -> CachePartition | None:
        """A pipeline's answers are cached only while all its step models are deterministic;
        they are dropped whenever the versions its steps use change."""
        return self.cache if self._steps_deterministic else None

    def triton_config(self) -> dict[str, Any]:
        doc = LoadedModel.triton_config(self)
        doc["backend"] = ""
        doc.pop("instance_group", None)
        doc["ensemble_scheduling"] = {
            "step": [
                {
                    "model_name": step.model,
                    "model_version": int(step.version) if step.version else -1,
                    "input_map": dict(step.input_map),
                    "output_map": dict(step.output_map),
                }
                for step in self.graph.steps
                if step.model is not None
            ]
        }
        doc["parameters"]["pipeline"] = {"string_value": describe(self.config)}
        return doc


def describe(config: ModelConfig) -> str:
    """Every step as model.yaml gives it, as JSON (a Triton config parameter is a string)."""
    steps = [
        step.model_dump(exclude_none=True, exclude_defaults=True) for step in config.steps or ()
    ]
    return json.dumps(steps, separators=(",", ":"))


class PipelineKind:
    """Builds pipeline versions (serving.model.ModelKind): ``call`` runs a model step through
    the dataplane, ``executor`` runs the transforms."""

    def __init__(self, call: StepCall, executor: Executor) -> None:
        self._call = call
        self._executor = executor

    def __call__(self, ctx: LoadContext) -> LoadedModel:
        config = ctx.config
        graph = build_graph(config)
        specs = graph.inputs + graph.outputs
        batchable = all(spec.shape and spec.shape[0] == -1 for spec in specs)
        runner = PipelineRunner(
            ctx.model_name, graph, self._call, self._executor, config.max_queue_size
        )
        return PipelineModel(
            name=ctx.model_name,
            version=ctx.version,
            platform=config.platform or PIPELINE_PLATFORM,
            runtime_name="pipeline",
            config=config,
            runtime=None,
            inputs=graph.inputs,
            outputs=graph.outputs,
            max_batch_size=max_batch_size(config, batchable, specs),
            batcher=runner,
            graph=graph,
        )
