"""``modelserve convert``: a model artifact to ONNX, with the parity report.

The artifact is loaded by its runtime (the same code that serves it, so ``trust`` rules apply),
converted by the runtime's converter (skl2onnx, onnxmltools), optionally quantised
(int8, dynamic) and optimised by onnxruntime, and every graph that would be written is run on the
sample rows against the native model (serving/conversion.py). ``conversion_report.json`` is
written beside the output whatever the outcome; the ONNX file only when the gate passed (or with
``force``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from modelserve.config.model import MODEL_CONFIG_FILE, ModelConfig, load_model_config
from modelserve.errors import ConversionError, ModelLoadError
from modelserve.runtimes.base import LoadContext, OnnxExport, OnnxTools, Runtime
from modelserve.runtimes.registry import (
    SUFFIX_RUNTIMES,
    RuntimeRegistry,
    artifact_runtimes,
    runtime_for_file,
)
from modelserve.serving.conversion import (
    Conversion,
    ConversionReport,
    Converter,
    PrecisionChoice,
    Progress,
    Tolerance,
)
from modelserve.serving.datasets import DataError, features_for, read_table
from modelserve.types import TensorSpec

__all__ = ["ConvertOptions", "ConvertResult", "OfflineError", "convert_artifact", "load_artifact"]

REPORT_FILE = "conversion_report.json"
QUANTIZABLE_OPS = frozenset(
    {"MatMul", "Gemm", "Conv", "Gather", "Attention", "LSTM", "GRU", "EmbedLayerNormalization"}
)
"""Operators onnxruntime's dynamic quantisation rewrites."""


class OfflineError(Exception):
    """The command cannot run (bad artifact, sample or option): one line for the user."""


@dataclass(frozen=True, slots=True)
class ConvertOptions:
    artifact: Path
    sample: Path
    out: Path = Path("model.onnx")
    opset: int | None = None
    optimize: bool = False
    quantize: str | None = None
    trust: bool = False
    runtime: str | None = None
    label: str | None = None
    precision: PrecisionChoice = "auto"
    tolerance: Tolerance = field(default_factory=Tolerance)
    force: bool = False


@dataclass(frozen=True, slots=True)
class ConvertResult:
    report: ConversionReport
    report_path: Path
    model_path: Path | None
    """Where the ONNX graph was written; None when the gate failed (and no ``force``)."""


@dataclass(frozen=True, slots=True)
class Artifact:
    runtime: Runtime
    runtime_name: str
    config: ModelConfig
    ctx: LoadContext


def _config_for(version_dir: Path) -> ModelConfig:
    """The model.yaml of the model folder the version folder belongs to, if there is one."""
    model_dir = version_dir.parent
    if version_dir.name.isdigit() and (model_dir / MODEL_CONFIG_FILE).is_file():
        return load_model_config(model_dir)
    return ModelConfig()


def _folder_artifact(folder: Path, named: str | None) -> tuple[str, str]:
    """The artifact of a version folder and its runtime, told by its file ending as the server
    tells them (runtimes/registry.py's suffix table); ``named``: model.yaml's ``artifact:``."""
    if named is not None:
        runtime = runtime_for_file(named)
        if runtime is None:
            raise OfflineError(f"cannot tell the runtime of {named} (model.yaml); give --runtime")
        return named, runtime
    found = artifact_runtimes(folder)
    if not found:
        endings = ", ".join(suffix for suffix, _ in SUFFIX_RUNTIMES)
        raise OfflineError(
            f"{folder} holds no model file whose ending names its runtime ({endings}); "
            "give the file, or --runtime"
        )
    if len(found) > 1:
        names = ", ".join(f"{file} ({runtime})" for file, runtime in found.items())
        raise OfflineError(f"{folder} holds several model files ({names}); give the one to convert")
    return next(iter(found.items()))


def load_artifact(
    path: Path, registry: RuntimeRegistry, runtime: str | None = None, trust: bool = False
) -> Artifact:
    """Load an artifact file (or a version folder) with its runtime. The model.yaml of its model
    folder is honoured when it sits in a model repository; ``runtime`` and ``trust`` override."""
    path = path.resolve()
    if not path.exists():
        raise OfflineError(f"{path}: no such file or folder")
    version_dir = path if path.is_dir() else path.parent
    try:
        config = _config_for(version_dir)
    except ModelLoadError as exc:
        raise OfflineError(str(exc)) from None
    update: dict[str, object] = {"trust": config.trust or trust}
    if path.is_file():
        update["artifact"] = path.name
    name = runtime or config.runtime
    if name is None and path.is_file():
        name = runtime_for_file(path.name)
        if name is None:
            raise OfflineError(f"cannot tell the runtime of {path.name}; give --runtime")
    elif name is None:
        file, name = _folder_artifact(path, config.artifact)
        update["artifact"] = file
    config = config.model_copy(update=update)
    ctx = LoadContext(
        version_dir.parent.name if path.is_dir() else path.stem,
        version_dir.name,
        version_dir.parent,
        version_dir,
        config,
    )
    try:
        loaded = registry.resolve(name).load(ctx)
    except ModelLoadError as exc:
        raise OfflineError(str(exc)) from None
    return Artifact(loaded, name, config, ctx)


def onnx_loader(registry: RuntimeRegistry) -> tuple[type[Runtime], OnnxTools]:
    try:
        onnx_cls = registry.resolve("onnx")
    except ModelLoadError as exc:
        raise OfflineError(str(exc)) from None
    if not isinstance(onnx_cls, OnnxTools):
        raise OfflineError("the 'onnx' runtime offers no graph optimisation or quantisation")
    return onnx_cls, cast(OnnxTools, onnx_cls)


def _quantizable(model: bytes) -> None:
    import onnx

    graph = onnx.load_from_string(model).graph
    ops = {node.op_type for node in graph.node}
    if not ops & QUANTIZABLE_OPS:
        ml_ops = sorted({n.op_type for n in graph.node if n.domain == "ai.onnx.ml"})
        what = f"only ai.onnx.ml operators ({', '.join(ml_ops)})" if ml_ops else "no weights"
        raise OfflineError(
            f"--quantize int8 is dynamic quantisation of networks' weights (MatMul, Gemm, Conv, "
            f"...); this graph has {what}, which it does not touch"
        )


class _Pipeline:
    """The steps after the conversion: quantise, optimise, each checked again."""

    def __init__(self, converter: Converter, tools: OnnxTools, workdir: Path) -> None:
        self.converter = converter
        self.tools = tools
        self.workdir = workdir

    def finish(self, conversion: Conversion, options: ConvertOptions) -> Conversion:
        export, path = conversion.export, conversion.path
        if export is None or path is None or not conversion.report.passed:
            return conversion
        steps: list[str] = []
        if options.quantize:
            _quantizable(export.model)
            self.converter.step("quantising (int8, dynamic)")
            target = self.workdir / "model.int8.onnx"
            self.tools.quantize_int8_file(path, target)
            path, steps = target, [*steps, "int8 dynamic quantisation"]
        if options.optimize:
            self.converter.step("optimising the graph (onnxruntime, all levels)")
            target = self.workdir / "model.optimized.onnx"
            self.tools.optimize_file(path, target)
            path, steps = target, [*steps, "onnxruntime graph optimisation"]
        if not steps:
            return conversion
        if conversion.runtime is not None:
            conversion.runtime.unload()
        final = OnnxExport(
            model=path.read_bytes(),
            converter=f"{export.converter} + {' + '.join(steps)}",
            versions=export.versions,
            outputs=export.outputs,
            precision=export.precision,
            trees=export.trees,
        )
        parity, adapter = self.converter.check(final, path, "+".join(steps))
        reasons = [*conversion.report.reasons, *parity.reasons]
        report = self.converter.report(final, parity, reasons)
        return Conversion(final, path, report, adapter)


def _write_json(path: Path, document: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def convert_artifact(
    options: ConvertOptions, registry: RuntimeRegistry, progress: Progress | None = None
) -> ConvertResult:
    """Run the whole conversion; OfflineError for what the user must fix."""
    if options.quantize not in (None, "int8"):
        raise OfflineError(f"--quantize {options.quantize}: only int8 is supported")
    out = options.out.resolve()
    if not out.parent.is_dir():
        raise OfflineError(f"{out.parent}: no such folder for --out")
    if progress is not None:
        progress(f"loading {options.artifact.name}")
    artifact = load_artifact(options.artifact, registry, options.runtime, options.trust)
    onnx_cls, tools = onnx_loader(registry)
    native = artifact.runtime
    declared = artifact.config.inputs
    specs = (
        tuple(TensorSpec(t.name, t.datatype, tuple(t.shape)) for t in declared)
        if declared
        else native.signature().inputs
    )
    try:
        table = read_table(options.sample)
        exclude = [options.label] if options.label else []
        sample = features_for(table, specs, exclude)
    except DataError as exc:
        native.unload()
        raise OfflineError(str(exc)) from None

    def load_onnx(path: Path) -> Runtime:
        config = ModelConfig(artifact=path.name)
        return onnx_cls.load(LoadContext(out.stem, "1", path.parent, path.parent, config))

    report_path = out.parent / REPORT_FILE
    try:
        with tempfile.TemporaryDirectory(prefix="modelserve-convert-") as tmp:
            workdir = Path(tmp)
            converter = Converter(native, sample, load_onnx, workdir, options.tolerance, progress)
            try:
                conversion = converter.convert(options.opset, options.precision)
                conversion = _Pipeline(converter, tools, workdir).finish(conversion, options)
            except (ConversionError, ModelLoadError) as exc:
                report = ConversionReport.failed(artifact.runtime_name, table.rows, str(exc))
                _write_json(report_path, report.to_dict())
                return ConvertResult(report, report_path, None)
            if conversion.runtime is not None:
                conversion.runtime.unload()
            written = None
            if conversion.path is not None and (conversion.report.passed or options.force):
                if progress is not None:
                    progress(f"writing {out.name}")
                tmp_out = out.with_name(f".{out.name}.tmp")
                shutil.copyfile(conversion.path, tmp_out)
                os.replace(tmp_out, out)
                written = out
            _write_json(report_path, conversion.report.to_dict())
            return ConvertResult(conversion.report, report_path, written)
    finally:
        native.unload()
