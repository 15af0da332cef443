"""The validation gate in the load path: a loaded version (and the baseline its change
thresholds compare with) evaluated by serving/gates.py before the version may take traffic.

The repository chooses the baseline on the event loop (``Baseline``) and calls
``run_version_gate`` from its loader thread. A baseline that is serving is called directly
(``Runtime.predict`` from the loader thread, beside the live requests: the runtimes are
thread-safe, see ``Runtime``) and never timed again: its latency figures are the ones its own gate
measured while it loaded. A ``compare_to: version:N`` that is not loaded is loaded for the gate
and unloaded after it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modelserve.config.model import ModelConfig
from modelserve.errors import ModelLoadError
from modelserve.serving.gates import GateReport, Subject, run_gate
from modelserve.serving.model import LoadedModel

log = logging.getLogger("modelserve.serving.gatekeeper")

__all__ = ["Baseline", "run_version_gate", "subject_of", "unload_quietly"]

VersionLoader = Callable[[str, Path, ModelConfig, str, Path], LoadedModel]
"""Loads (name, model_dir, config, version, version_dir) as the repository does."""


@dataclass(frozen=True, slots=True)
class Baseline:
    version: str
    model: LoadedModel | None
    """The loaded version; None: load it from its folder for the gate."""
    latency: dict[str, float] | None = None
    """Its latency metrics from its own gate (a serving version is never timed again)."""


def subject_of(model: LoadedModel, latency: dict[str, float] | None, timed: bool) -> Subject:
    """A loaded version as the gate calls it: its runtime, one batch of max_batch_size rows per
    call (one row without a batch dimension when it has none)."""
    runtime = model.runtime
    if runtime is None:
        raise ModelLoadError("a validation gate needs a model with a runtime (not a pipeline)")
    return Subject(
        version=model.version,
        predict=runtime.predict,
        inputs=model.inputs,
        batch=model.max_batch_size,
        classes=runtime.signature().labels,
        latency=latency,
        timed=timed,
    )


def unload_quietly(model: LoadedModel) -> None:
    if model.cache is not None:
        model.cache.clear()
    try:
        if model.runtime is not None:
            model.runtime.unload()
    except Exception:
        log.exception("model %s version %s failed to unload", model.name, model.version)


def run_version_gate(
    name: str,
    config: ModelConfig,
    candidate: LoadedModel,
    version_dir: Path,
    model_dir: Path,
    baseline: Baseline | None,
    load: VersionLoader,
    relative: Callable[[str], str] = str,
) -> GateReport:
    """The gate of a loaded version against its baseline. Blocking. ``relative`` shortens the
    paths named in notes (the repository's root made relative)."""
    validation = config.validation
    if validation is None:
        raise ModelLoadError("the model has no 'validation' block")
    subject = subject_of(candidate, None, True)
    temporary: LoadedModel | None = None
    other: Subject | None = None
    note = "no version to compare with"
    try:
        if baseline is not None:
            model = baseline.model
            if model is None:
                folder = model_dir / baseline.version
                if not folder.is_dir():
                    note = f"compare_to: version {baseline.version} has no version folder"
                else:
                    try:
                        temporary = load(name, model_dir, config, baseline.version, folder)
                    except ModelLoadError as exc:
                        note = f"version {baseline.version} cannot be loaded: {exc}"
                model = temporary
            if model is not None:
                other = subject_of(model, baseline.latency, temporary is not None)
        report = run_gate(name, validation, version_dir, model_dir, subject, other, relative(note))
        compares = any(t.compares for t in validation.metrics.values())
        named = validation.baseline_version is not None
        if named and compares and other is None and report.passed:
            # compare_to names a version: comparing with nothing would pass unchecked
            report.failures.append(f"cannot compare with {validation.compare_to}: {relative(note)}")
            report.passed = False
        return report
    finally:
        if temporary is not None:
            unload_quietly(temporary)
