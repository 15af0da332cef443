"""A loaded model converted to ONNX behind a parity gate: the native model and the ONNX graph run
on the same sample rows and must agree before the graph is used (``modelserve convert``,
``accelerate: onnx``).

Tolerances follow skl2onnx's own tests: every numeric output within ``rtol`` 1e-5 and ``atol``
1.5e-5 of the native one; for classifiers, labels agree on at least 99.9 % of the rows and
probabilities are within 1e-4. A tree model whose float32 graph fails (a row whose feature lies
between a split threshold and its float32 rounding takes the other branch) is converted again
with float64 decisions, and the report shows both attempts.

Only ``Runtime`` objects are used here: the native runtime converts itself
(``Runtime.export_onnx``) and the caller hands in a loader for ONNX files, so that no framework
is imported outside its runtime module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from modelserve.codecs.tensors import V2_TO_NUMPY
from modelserve.errors import ConversionError
from modelserve.runtimes.base import (
    Arrays,
    OnnxExport,
    OnnxOutput,
    Precision,
    Runtime,
    distribution_versions,
)
from modelserve.types import RuntimeSignature

log = logging.getLogger("modelserve.serving.conversion")

__all__ = [
    "Conversion",
    "ConversionReport",
    "OnnxAdapter",
    "Parity",
    "Tolerance",
    "check_parity",
    "convert",
]

OnnxLoader = Callable[[Path], Runtime]
"""Loads an ONNX file into the onnx runtime."""
Progress = Callable[[str], None]
PrecisionChoice = Literal["auto", "float32", "float64"]

REPORT_KEYS = (
    "converter",
    "versions",
    "rows",
    "max_abs_err",
    "max_rel_err",
    "mismatch_rate",
    "label_agreement",
    "passed",
    "reasons",
)


@dataclass(frozen=True, slots=True)
class Tolerance:
    rtol: float = 1e-5
    atol: float = 1.5e-5
    label_agreement: float = 0.999
    """Least share of rows whose labels must agree (classifiers)."""
    probability_atol: float = 1e-4


@dataclass(slots=True)
class Parity:
    """How one ONNX graph compares with the native model on the sample."""

    precision: str
    rows: int
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    mismatch_rate: float = 0.0
    label_agreement: float | None = None
    reasons: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.reasons

    def summary(self) -> str:
        if self.passed:
            agreement = (
                f", labels agree on {self.label_agreement:.2%}"
                if self.label_agreement is not None
                else ""
            )
            return (
                f"{self.precision}: passed on {self.rows} rows (max abs err "
                f"{self.max_abs_err:.3g}, max rel err {self.max_rel_err:.3g}{agreement})"
            )
        return f"{self.precision}: failed: " + "; ".join(self.reasons)


@dataclass(slots=True)
class ConversionReport:
    """``conversion_report.json``: exactly the keys of REPORT_KEYS."""

    converter: str
    versions: dict[str, str]
    rows: int
    max_abs_err: float
    max_rel_err: float
    mismatch_rate: float
    label_agreement: float | None
    passed: bool
    reasons: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in REPORT_KEYS}

    @classmethod
    def from_dict(cls, data: Any) -> ConversionReport:
        if not isinstance(data, dict) or set(data) != set(REPORT_KEYS):
            raise ValueError("not a conversion report")
        return cls(**data)

    @classmethod
    def failed(cls, converter: str, rows: int, *reasons: str) -> ConversionReport:
        return cls(converter, {}, rows, 0.0, 0.0, 0.0, None, False, list(reasons))


class OnnxAdapter(Runtime):
    """An ONNX graph served under the native model's signature: inputs are cast to the graph's
    types, the native outputs are read from the graph's as the export says and cast to the
    native datatypes (a float32 graph of a model that answers FP64 still answers FP64)."""

    def __init__(
        self, onnx: Runtime, outputs: tuple[OnnxOutput, ...], signature: RuntimeSignature
    ) -> None:
        self._onnx = onnx
        self._outputs = outputs
        self._signature = signature
        self._input_dtypes = {
            spec.name: V2_TO_NUMPY[spec.datatype] for spec in onnx.signature().inputs
        }
        self._output_dtypes = {
            spec.name: V2_TO_NUMPY[spec.datatype]
            for spec in signature.outputs
            if spec.datatype != "BYTES"
        }
        self.platform = onnx.platform  # type: ignore[misc]  # per instance

    @classmethod
    def load(cls, ctx: Any) -> Runtime:
        raise ConversionError("an OnnxAdapter is built by the conversion, not loaded")

    def signature(self) -> RuntimeSignature:
        return self._signature

    def predict(self, inputs: Arrays) -> Arrays:
        dtypes = self._input_dtypes
        feed = {
            name: array.astype(dtypes[name], copy=False) if name in dtypes else array
            for name, array in inputs.items()
        }
        produced = self._onnx.predict(feed)
        out: Arrays = {}
        for binding in self._outputs:
            array = produced[binding.source]
            if binding.column is not None:
                array = array[:, binding.column]
            if binding.flatten:
                array = array.reshape(-1)
            dtype = self._output_dtypes.get(binding.name)
            out[binding.name] = array if dtype is None else array.astype(dtype, copy=False)
        return out

    def notices(self) -> tuple[str, ...]:
        return self._onnx.notices()

    def execution_providers(self) -> tuple[str, ...]:
        return self._onnx.execution_providers()

    def unload(self) -> None:
        self._onnx.unload()


def _is_label(array: npt.NDArray[Any], binding: OnnxOutput) -> bool:
    return array.dtype.kind in "OSUb" or (binding.name == "label" and array.dtype.kind in "iu")


def _label_text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _ties(
    same: npt.NDArray[np.bool_],
    want: npt.NDArray[Any],
    got: npt.NDArray[Any],
    probabilities: npt.NDArray[Any] | None,
    classes: tuple[str, ...],
    atol: float,
) -> npt.NDArray[np.bool_]:
    """Rows whose labels differ only because the native model's top probabilities tie: both
    answers are equally right there, and implementations break ties differently."""
    if probabilities is None or probabilities.ndim != 2 or probabilities.shape[1] != len(classes):
        return np.zeros_like(same)
    index = {name: i for i, name in enumerate(classes)}
    tied = np.zeros_like(same)
    for row in np.flatnonzero(~same):
        i = index.get(_label_text(want[row]))
        j = index.get(_label_text(got[row]))
        if i is not None and j is not None:
            tied[row] = abs(float(probabilities[row, i]) - float(probabilities[row, j])) <= atol
    return tied


def check_parity(
    native: Arrays,
    converted: Arrays,
    outputs: tuple[OnnxOutput, ...],
    precision: str,
    tolerance: Tolerance,
    classes: tuple[str, ...] = (),
) -> Parity:
    """Compare the native outputs with the converted ones, output by output. ``classes`` (the
    classifier's labels, in probability-column order) lets a label disagreement on tied top
    probabilities count as agreement."""
    rows = len(next(iter(native.values()))) if native else 0
    probabilities = next(
        (native.get(b.name) for b in outputs if b.source == "probabilities" and b.column is None),
        None,
    )
    parity = Parity(precision, rows)
    bad_rows = np.zeros(rows, dtype=bool)
    worst = ""
    for binding in outputs:
        want, got = native.get(binding.name), converted.get(binding.name)
        if want is None or got is None:
            parity.reasons.append(f"output '{binding.name}' is missing")
            continue
        want, got = np.asarray(want), np.asarray(got)
        if want.shape != got.shape:
            parity.reasons.append(
                f"output '{binding.name}': shape {list(got.shape)} instead of {list(want.shape)}"
            )
            continue
        if _is_label(want, binding):
            same = (want.reshape(rows, -1) == got.reshape(rows, -1)).all(axis=1)
            if want.ndim == 1:
                atol = tolerance.probability_atol
                same |= _ties(same, want, got, probabilities, classes, atol)
            agreement = float(same.mean()) if rows else 1.0
            previous = parity.label_agreement
            parity.label_agreement = agreement if previous is None else min(previous, agreement)
            continue
        a, b = want.astype(np.float64), got.astype(np.float64)
        diff = np.abs(a - b)
        diff[np.isnan(a) & np.isnan(b)] = 0.0
        diff[np.isnan(diff)] = np.inf
        probability = binding.source == "probabilities"
        rtol = 0.0 if probability else tolerance.rtol
        atol = tolerance.probability_atol if probability else tolerance.atol
        close = diff <= atol + rtol * np.abs(a)
        bad_rows |= ~close.reshape(rows, -1).all(axis=1)
        if diff.size:
            max_abs = float(diff.max())
            if max_abs > parity.max_abs_err:
                parity.max_abs_err, worst = max_abs, binding.name
            nonzero = np.abs(a) > 0
            if nonzero.any():
                relative = float((diff[nonzero] / np.abs(a[nonzero])).max())
                parity.max_rel_err = max(parity.max_rel_err, relative)
    mismatched = int(bad_rows.sum())
    parity.mismatch_rate = mismatched / rows if rows else 0.0
    if mismatched:
        has_probabilities = any(b.source == "probabilities" for b in outputs)
        probabilities_atol = (
            f" (probabilities: atol {tolerance.probability_atol:g})" if has_probabilities else ""
        )
        parity.reasons.append(
            f"{mismatched} of {rows} rows ({parity.mismatch_rate:.2%}) differ beyond rtol "
            f"{tolerance.rtol:g}/atol {tolerance.atol:g}{probabilities_atol}; max abs err "
            f"{parity.max_abs_err:.3g} in '{worst}'"
        )
    overall = parity.label_agreement
    if overall is not None and overall < tolerance.label_agreement:
        disagree = round((1 - overall) * rows)
        parity.reasons.append(
            f"labels agree on {overall:.2%} of the rows, below {tolerance.label_agreement:.1%} "
            f"({disagree} of {rows} disagree)"
        )
    return parity


@dataclass(slots=True)
class Conversion:
    """The chosen ONNX graph (written at ``path``), its report, and the graph loaded under the
    native signature (None when it could not be loaded)."""

    export: OnnxExport | None
    path: Path | None
    report: ConversionReport
    runtime: OnnxAdapter | None


def graph_opsets(model: bytes) -> dict[str, str]:
    """The opsets an ONNX graph imports, as ``{domain: version}`` (``ai.onnx`` for the
    default domain)."""
    import onnx

    graph = onnx.load_from_string(model)
    return {(op.domain or "ai.onnx"): str(op.version) for op in graph.opset_import}


class Converter:
    """Converts one native model, checking each attempt on the same sample."""

    def __init__(
        self,
        native: Runtime,
        sample: Arrays,
        loader: OnnxLoader,
        workdir: Path,
        tolerance: Tolerance = Tolerance(),
        progress: Progress | None = None,
    ) -> None:
        self.native = native
        self.sample = sample
        self.loader = loader
        self.workdir = workdir
        self.tolerance = tolerance
        self._progress = progress
        self.rows = len(next(iter(sample.values()))) if sample else 0
        self._native_out: Arrays | None = None

    def step(self, description: str) -> None:
        if self._progress is not None:
            self._progress(description)

    def native_outputs(self) -> Arrays:
        if self._native_out is None:
            self.step(f"running the native model on {self.rows} rows")
            self._native_out = self.native.predict(self.sample)
        return self._native_out

    def check(self, export: OnnxExport, path: Path, label: str) -> tuple[Parity, OnnxAdapter]:
        """Load the graph at ``path`` and compare it with the native model."""
        native_out = self.native_outputs()
        self.step(f"running the {label} graph on {self.rows} rows")
        adapter = OnnxAdapter(self.loader(path), export.outputs, self.native.signature())
        try:
            converted = adapter.predict(self.sample)
        except Exception as exc:
            adapter.unload()
            raise ConversionError(f"the {label} graph fails on the sample: {exc}") from None
        classes = self.native.signature().labels
        parity = check_parity(native_out, converted, export.outputs, label, self.tolerance, classes)
        return parity, adapter

    def attempt(
        self, opset: int | None, precision: Precision
    ) -> tuple[OnnxExport, Path, Parity, OnnxAdapter]:
        self.step(f"converting in {precision}")
        export = self.native.export_onnx(opset, precision, self.sample)
        path = self.workdir / f"model.{precision}.onnx"
        path.write_bytes(export.model)
        parity, adapter = self.check(export, path, precision)
        return export, path, parity, adapter

    def report(self, export: OnnxExport, parity: Parity, reasons: list[str]) -> ConversionReport:
        versions = {
            **export.versions,
            **distribution_versions("onnxruntime", "onnxruntime-gpu"),
            **graph_opsets(export.model),
        }
        return ConversionReport(
            converter=export.converter,
            versions=versions,
            rows=parity.rows,
            max_abs_err=parity.max_abs_err,
            max_rel_err=parity.max_rel_err,
            mismatch_rate=parity.mismatch_rate,
            label_agreement=parity.label_agreement,
            passed=parity.passed,
            reasons=reasons,
        )

    def convert(self, opset: int | None = None, precision: PrecisionChoice = "auto") -> Conversion:
        """Convert (float32 first unless told otherwise), retrying a failing tree model in
        float64. ConversionError when the model cannot be converted at all."""
        first: Precision = "float64" if precision == "float64" else "float32"
        export, path, parity, adapter = self.attempt(opset, first)
        if parity.passed or not export.trees or precision != "auto":
            return Conversion(export, path, self.report(export, parity, parity.reasons), adapter)
        log.info("float32 graph disagrees with the native trees; retrying in float64")
        reasons = [parity.summary()]
        try:
            export64, path64, parity64, adapter64 = self.attempt(opset, "float64")
        except ConversionError as exc:
            reasons.append(f"float64: {exc}")
            return Conversion(export, path, self.report(export, parity, reasons), adapter)
        reasons.append(parity64.summary())
        if not parity64.passed:
            adapter64.unload()
            return Conversion(export, path, self.report(export, parity, reasons), adapter)
        adapter.unload()
        return Conversion(export64, path64, self.report(export64, parity64, reasons), adapter64)


def convert(
    native: Runtime,
    sample: Arrays,
    loader: OnnxLoader,
    workdir: Path,
    *,
    opset: int | None = None,
    precision: PrecisionChoice = "auto",
    tolerance: Tolerance = Tolerance(),
    progress: Progress | None = None,
) -> Conversion:
    """Convert ``native`` to ONNX in ``workdir`` behind the parity gate on ``sample``."""
    converter = Converter(native, sample, loader, workdir, tolerance, progress)
    return converter.convert(opset, precision)
