"""``accelerate: onnx``: a scikit-learn, XGBoost or LightGBM version served through ONNX.

At load, the native model is converted behind the parity gate of serving/conversion.py, on the
version's own rows (its warm-up sample and validation data) topped up with rows drawn within the
model's known feature ranges. The graph and its report are cached under
``<version>/.modelserve/`` keyed by the artifact's hash, so a restart loads the graph instead of
converting again (the gate still runs, on the current sample). The graph serves under the native
model's signature (same inputs, outputs and datatypes: clients see no difference). When the
conversion fails or disagrees with the native model, the native model serves and the reason is
logged and shown in the repository index.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelserve.codecs.tensors import V2_TO_NUMPY
from modelserve.config.model import ModelConfig
from modelserve.errors import ConversionError, ModelLoadError
from modelserve.runtimes.base import (
    CACHE_DIR,
    Arrays,
    LoadContext,
    OnnxExport,
    OnnxOutput,
    Runtime,
    distribution_versions,
)
from modelserve.runtimes.registry import RuntimeRegistry
from modelserve.serving.conversion import Conversion, ConversionReport, Converter
from modelserve.serving.datasets import DataError, features_for, read_table
from modelserve.serving.gates import find_data
from modelserve.serving.warmup import read_sample_file

log = logging.getLogger("modelserve.serving.acceleration")

__all__ = [
    "ACCELERATED_RUNTIMES",
    "Accelerated",
    "accelerate",
    "onnx_loader",
    "own_rows",
    "sample_rows",
]

ACCELERATED_RUNTIMES = frozenset({"sklearn", "xgboost", "lightgbm"})
MAX_SAMPLE_ROWS = 1000
"""Rows of the version's own data the gate runs on, at most."""
MIN_SAMPLE_ROWS = 200
"""Fewer own rows than this are topped up with rows drawn within the feature ranges."""
SEED = 0

OnnxLoader = Callable[[Path], Runtime]


@dataclass(frozen=True, slots=True)
class Accelerated:
    runtime: Runtime
    """What serves: the ONNX graph under the native signature, or the native runtime."""
    notice: str
    """Why the native model serves ("" when the graph does)."""
    summary: str
    """One line for the log."""


def sample_rows(native: Runtime, own: list[Arrays]) -> Arrays:
    """The rows to check the conversion on: the version's own (at most MAX_SAMPLE_ROWS), topped
    up to MIN_SAMPLE_ROWS with rows drawn uniformly within the model's feature ranges (standard
    normal where it tells none). ConversionError when the model has no single tabular input."""
    inputs = native.signature().inputs
    if len(inputs) != 1 or len(inputs[0].shape) != 2 or inputs[0].shape[1] < 1:
        raise ConversionError("no single [rows, features] input to draw sample rows for")
    spec = inputs[0]
    width = spec.shape[1]
    dtype = V2_TO_NUMPY[spec.datatype]
    parts = [
        np.asarray(arrays[spec.name], dtype=dtype).reshape(-1, width)
        for arrays in own
        if spec.name in arrays
    ]
    rows = np.concatenate(parts)[:MAX_SAMPLE_ROWS] if parts else np.empty((0, width), dtype)
    missing = MIN_SAMPLE_ROWS - len(rows)
    if missing > 0:
        rng = np.random.default_rng(SEED)
        ranges = native.feature_ranges()
        if ranges is not None and len(ranges) == width:
            low = np.array([r[0] for r in ranges])
            high = np.array([r[1] for r in ranges])
            drawn = rng.uniform(low, high, size=(missing, width))
        else:
            drawn = rng.standard_normal((missing, width))
        rows = np.concatenate([rows, drawn.astype(dtype)])
    return {spec.name: rows}


def own_rows(ctx: LoadContext, native: Runtime) -> list[Arrays]:
    """The version's own rows: its warmup sample file and its validation data (one that
    cannot be read is left out here: the warmup or the gate reports it)."""
    inputs = native.signature().inputs
    found: list[Arrays] = []
    warmup = ctx.config.warmup
    if warmup is not None and warmup.sample_file is not None:
        with contextlib.suppress(ModelLoadError):
            found.append(read_sample_file(ctx.model_dir, warmup.sample_file, inputs))
    validation = ctx.config.validation
    if validation is not None:
        with contextlib.suppress(DataError):
            path = find_data(validation, ctx.version_dir, ctx.model_dir)
            exclude = [validation.label] if validation.label else []
            found.append(features_for(read_table(path), inputs, exclude))
    return found


def onnx_loader(registry: RuntimeRegistry, ctx: LoadContext) -> OnnxLoader:
    """Loads a graph file with the onnx runtime (resolved when first used, so that a server
    without onnxruntime falls back to the native model with the reason)."""

    def load(path: Path) -> Runtime:
        config = ModelConfig(
            artifact=path.name,
            parameters=dict(ctx.config.parameters),
            execution=ctx.config.execution,  # its providers run the graph
        )
        folder = path.parent
        target = LoadContext(ctx.model_name, ctx.version, folder, folder, config)
        return registry.resolve("onnx").load(target)

    return load


def _artifact_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


class _Cache:
    """``<version>/.modelserve/onnx-<hash>.onnx`` and ``.json`` (the report and how to read the
    native outputs from the graph)."""

    def __init__(self, version_dir: Path, key: str) -> None:
        self.folder = version_dir / CACHE_DIR
        self.graph = self.folder / f"onnx-{key}.onnx"
        self.meta = self.folder / f"onnx-{key}.json"

    def read(self) -> tuple[OnnxExport | None, ConversionReport] | None:
        """The cached conversion when it was made with the libraries installed now."""
        try:
            meta = json.loads(self.meta.read_text(encoding="utf-8"))
            report = ConversionReport.from_dict(meta["report"])
            recorded: dict[str, str] = meta["versions"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if distribution_versions(*recorded) != recorded:
            return None  # a converter or onnxruntime changed: convert again
        if meta.get("outputs") is None:
            return None, report
        try:
            model = self.graph.read_bytes()
            outputs = tuple(OnnxOutput(**item) for item in meta["outputs"])
        except (OSError, TypeError):
            return None
        export = OnnxExport(
            model=model,
            converter=report.converter,
            versions=report.versions,
            outputs=outputs,
            precision=meta.get("precision", "float32"),
            trees=bool(meta.get("trees", False)),
        )
        return export, report

    def write(self, conversion: Conversion) -> None:
        export = conversion.export
        stack = [*(export.versions if export else {}), "onnxruntime", "onnxruntime-gpu"]
        meta: dict[str, Any] = {
            "report": conversion.report.to_dict(),
            "versions": distribution_versions(*stack),
            "outputs": None,
        }
        self.folder.mkdir(exist_ok=True)
        suffix = f".{os.getpid()}.tmp"
        if export is not None and conversion.path is not None:
            meta["outputs"] = [
                {"name": o.name, "source": o.source, "column": o.column, "flatten": o.flatten}
                for o in export.outputs
            ]
            meta["precision"], meta["trees"] = export.precision, export.trees
            tmp = self.graph.with_name(self.graph.name + suffix)
            shutil.copyfile(conversion.path, tmp)
            os.replace(tmp, self.graph)
        tmp = self.meta.with_name(self.meta.name + suffix)
        tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.meta)


def _fresh(converter: Converter, cache: _Cache) -> Conversion:
    """Convert now and cache the outcome, a failure included (a restart does not retry it)."""
    try:
        conversion = converter.convert()
    except ConversionError as exc:
        failed = ConversionReport.failed("", converter.rows, str(exc))
        conversion = Conversion(None, None, failed, None)
    try:
        cache.write(conversion)
    except OSError as exc:
        log.warning("cannot cache the ONNX conversion under %s: %s", cache.folder, exc)
    return conversion


def _recheck(
    converter: Converter, cache: _Cache, export: OnnxExport | None, report: ConversionReport
) -> Conversion:
    """The cached conversion, its gate run again on the current sample."""
    if export is None:
        reasons = [f"{reason} (cached: {cache.meta.name})" for reason in report.reasons]
        return Conversion(None, None, ConversionReport.failed("", report.rows, *reasons), None)
    parity, adapter = converter.check(export, cache.graph, export.precision)
    return Conversion(
        export, cache.graph, converter.report(export, parity, parity.reasons), adapter
    )


def accelerate(
    ctx: LoadContext, native: Runtime, loader: OnnxLoader, own_rows: list[Arrays]
) -> Accelerated:
    """The runtime to serve the version with: its ONNX graph under the native signature when the
    gate passes, else the native runtime (with the reason as ``notice``)."""
    try:
        artifact = ctx.find_artifact(native.artifact_suffixes)
        sample = sample_rows(native, own_rows)
    except (ConversionError, ModelLoadError) as exc:
        return _native(native, str(exc))
    cache = _Cache(ctx.version_dir, _artifact_hash(artifact))
    # onnxruntime reads a graph file when the session is made: the folder may go afterwards
    with tempfile.TemporaryDirectory(prefix="modelserve-onnx-") as tmp:
        converter = Converter(native, sample, loader, Path(tmp))
        try:
            found = cache.read()
            conversion = (
                _fresh(converter, cache) if found is None else _recheck(converter, cache, *found)
            )
        except (ConversionError, ModelLoadError) as exc:
            return _native(native, str(exc))
    report, runtime, export = conversion.report, conversion.runtime, conversion.export
    if report.passed and runtime is not None and export is not None:
        source = "cached graph" if found is not None else "graph"
        summary = (
            f"served through ONNX ({export.converter} {source}, {export.precision}; parity on "
            f"{report.rows} rows, max abs err {report.max_abs_err:.3g})"
        )
        return Accelerated(runtime, "", summary)
    if runtime is not None:
        runtime.unload()
    return _native(native, "; ".join(report.reasons) or "the conversion failed")


def _native(native: Runtime, reason: str) -> Accelerated:
    notice = f"accelerate: onnx did not apply, the native model serves: {reason}"
    return Accelerated(native, notice, notice)
