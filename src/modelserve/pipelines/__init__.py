"""Pipelines: ``runtime: pipeline`` models, graphs of steps that are other models of the
repository or built-in transforms (docs/pipelines.md)."""

from modelserve.pipelines.model import PIPELINE_PLATFORM, PipelineKind, PipelineModel
from modelserve.pipelines.runner import PipelineRunner, StepCall

__all__ = ["PIPELINE_PLATFORM", "PipelineKind", "PipelineModel", "PipelineRunner", "StepCall"]
