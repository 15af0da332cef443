"""``modelserve validate MODEL_DIR``: the validation gate of model.yaml run offline, on the same
loading and the same gate as the server (serving/gatekeeper.py), before a version is copied
where a server picks it up.

The candidate is ``--version N`` (default: the newest version the version policy selects). The
change thresholds compare with ``--baseline N``, else ``compare_to: version:N``, else (for
``compare_to: serving``) the newest version folder older than the candidate: the one that
serves until the candidate replaces it. Offline, both are loaded from their folders and both
are timed.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from modelserve.config.model import MODEL_CONFIG_FILE, ModelConfig, load_model_config
from modelserve.errors import ModelLoadError
from modelserve.runtimes.registry import RuntimeRegistry
from modelserve.serving.gatekeeper import Baseline, run_version_gate, unload_quietly
from modelserve.serving.gates import GateReport
from modelserve.serving.repository import ModelRepository

__all__ = ["ValidateOptions", "ValidateResult", "validate_model"]


class ValidateError(Exception):
    """The gate cannot run (no model.yaml, no validation block, no such version): one line."""


@dataclass(frozen=True, slots=True)
class ValidateOptions:
    model_dir: Path
    version: str | None = None
    baseline: str | None = None
    accelerate: str = "none"
    """The server's --accelerate to assume (model.yaml's ``accelerate`` wins)."""


@dataclass(frozen=True, slots=True)
class ValidateResult:
    report: GateReport
    version: str
    baseline: str | None


def _versions(model_dir: Path) -> list[int]:
    return sorted(
        int(p.name)
        for p in model_dir.iterdir()
        if p.is_dir() and p.name.isdigit() and not p.name.startswith("0")
    )


def _config(model_dir: Path) -> ModelConfig:
    if not (model_dir / MODEL_CONFIG_FILE).is_file():
        raise ValidateError(f"{model_dir}: no {MODEL_CONFIG_FILE} (the gate is its 'validation')")
    try:
        config = load_model_config(model_dir)
    except ModelLoadError as exc:
        raise ValidateError(str(exc)) from None
    if config.validation is None:
        raise ValidateError(f"{model_dir / MODEL_CONFIG_FILE} has no 'validation' block")
    return config


def _choose(
    options: ValidateOptions, config: ModelConfig, model_dir: Path
) -> tuple[str, str | None]:
    versions = _versions(model_dir)
    if options.version is not None:
        candidate = options.version
        if not (model_dir / candidate).is_dir():
            raise ValidateError(f"{model_dir}: no version folder {candidate}")
    else:
        selected = config.version_policy.select(versions)
        if not selected:
            raise ValidateError(f"{model_dir}: no version folder matches the version policy")
        candidate = str(selected[-1])
    assert config.validation is not None
    baseline = options.baseline or config.validation.baseline_version
    if baseline is None:
        older = [v for v in versions if v < int(candidate)]
        baseline = str(older[-1]) if older else None
    if baseline == candidate:
        raise ValidateError(f"version {candidate} cannot be its own baseline")
    return candidate, baseline


def validate_model(options: ValidateOptions, registry: RuntimeRegistry) -> ValidateResult:
    """Load the candidate (and its baseline), run the gate; ValidateError for what the user
    must fix. The report says whether the gate passed."""
    model_dir = options.model_dir.resolve()
    if not model_dir.is_dir():
        raise ValidateError(f"{options.model_dir}: no such model folder")
    config = _config(model_dir)
    candidate, baseline = _choose(options, config, model_dir)
    name = model_dir.name
    with ThreadPoolExecutor(1, thread_name_prefix="modelserve-validate") as executor:
        repository = ModelRepository(
            model_dir.parent, registry, executor, accelerate=options.accelerate
        )
        folder = model_dir / candidate
        try:
            loaded = repository.load_version(name, model_dir, config, candidate, folder)
        except ModelLoadError as exc:
            raise ValidateError(f"version {candidate} does not load: {exc}") from None
        try:
            report = run_version_gate(
                name,
                config,
                loaded,
                folder,
                model_dir,
                Baseline(baseline, None) if baseline is not None else None,
                repository.load_version,
            )
        except ModelLoadError as exc:
            raise ValidateError(str(exc)) from None
        finally:
            unload_quietly(loaded)
    return ValidateResult(report, candidate, baseline)
