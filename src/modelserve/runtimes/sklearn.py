"""scikit-learn estimators saved with skops (safe) or pickle/joblib (only with ``trust: true``)."""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt

from modelserve.codecs.tensors import v2_datatype
from modelserve.errors import ConversionError, ModelLoadError
from modelserve.runtimes.base import (
    WIDENING_TO_FP64,
    Arrays,
    LoadContext,
    OnnxExport,
    OnnxOutput,
    Precision,
    Runtime,
    distribution_versions,
    threshold_ranges,
)
from modelserve.types import RuntimeSignature, TensorSpec

logger = logging.getLogger("modelserve.runtimes.sklearn")

PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")

DEFAULT_OPSET = 17
"""ONNX opset of converted graphs unless told otherwise (onnxruntime >= 1.14 runs it)."""

# skops refuses to load types outside its own default list unless told to trust them; types
# from these packages are loaded without ``trust: true`` (e.g. sklearn.tree._tree.Tree, which
# every tree ensemble holds).
ALLOWED_MODULE_PREFIXES = ("sklearn.", "numpy.", "scipy.")


def trusted_by_default(type_name: str) -> bool:
    """Whether a type a skops file holds loads without ``trust: true``: one from the packages
    of ALLOWED_MODULE_PREFIXES (a whole package name: ``numpyx.`` is not ``numpy.``)."""
    return type_name.startswith(ALLOWED_MODULE_PREFIXES)


ARRAY_API_ADAPTERS = {
    "sklearn.externals.array_api_compat.torch": "torch",
    "sklearn.externals.array_api_compat.dask": "dask",
    "sklearn.externals.array_api_compat.cupy": "cupy",
}
"""scikit-learn's vendored array-API adapters, by the framework each one imports."""

_SKOPS_IMPORT = threading.Lock()
"""Serialises ``_skops_io`` (versions load in threads): a second load waits for the first's
import instead of using a half-initialised skops.io, and two never block and restore the
adapters at the same time."""


def _skops_io() -> ModuleType:
    """``skops.io``, imported without importing the frameworks scikit-learn adapts to.

    Importing skops.io builds its default trusted-type list with scikit-learn's
    ``all_estimators()``, whose ``pkgutil.walk_packages`` imports every package of sklearn,
    including the vendored array-API adapters ``sklearn.externals.array_api_compat.<x>``, and
    each of those imports its framework when it is installed: torch alone costs ~2 s and
    ~300 MB, dask.array ~0.5 s, to serve a model that needs neither. So, while skops.io is
    imported, the adapter of every framework not imported yet is blocked (``None`` in
    sys.modules, which the walk skips as an ImportError; the adapters hold no estimator, so the
    trusted list is the same); the entries are removed afterwards, so that scikit-learn's
    array-API support imports an adapter as usual when a caller asks for it."""
    with _SKOPS_IMPORT:
        if "skops.io" in sys.modules:  # imported, or being imported by code outside this lock:
            return importlib.import_module("skops.io")  # the import system waits for that one
        blocked = [
            adapter
            for adapter, framework in ARRAY_API_ADAPTERS.items()
            if adapter not in sys.modules and framework not in sys.modules
        ]
        for adapter in blocked:
            sys.modules[adapter] = None  # type: ignore[assignment]
        try:
            return importlib.import_module("skops.io")
        finally:
            for adapter in blocked:
                if sys.modules.get(adapter, ...) is None:
                    del sys.modules[adapter]


def _load_skops(path: Path, trust: bool) -> Any:
    sio = _skops_io()
    try:
        untrusted: list[str] = sio.get_untrusted_types(file=path)
    except Exception as exc:
        raise ModelLoadError(f"cannot read skops file {path.name}: {exc}") from None
    refused = [name for name in untrusted if not trusted_by_default(name)]
    if refused and not trust:
        raise ModelLoadError(
            f"skops file {path.name} holds types outside sklearn/numpy/scipy: "
            f"{', '.join(refused)}; set 'trust: true' in model.yaml if you trust them"
        )
    if refused:
        logger.warning("loading %s with trusted custom types: %s", path, ", ".join(refused))
    try:
        return sio.load(path, trusted=untrusted)
    except Exception as exc:
        raise ModelLoadError(f"skops cannot load {path.name}: {exc}") from None


def _load_pickle(path: Path, trust: bool) -> Any:
    if not trust:
        raise ModelLoadError(
            f"refusing to load pickle file {path.name}: pickle can run arbitrary code; "
            "set 'trust: true' in model.yaml if you trust it, or save the model with skops"
        )
    logger.warning("loading pickle file %s because the model config sets 'trust: true'", path)
    try:
        return joblib.load(path)
    except Exception as exc:
        raise ModelLoadError(f"cannot unpickle {path.name}: {exc}") from None


def _as_bytes_labels(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    flat = [
        item if isinstance(item, bytes) else str(item).encode("utf-8") for item in array.ravel()
    ]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(array.shape)


class SklearnRuntime(Runtime):
    platform = "sklearn"
    artifact_suffixes = (".skops", ".joblib", ".pkl", ".pickle")

    def __init__(self, estimator: Any, declared_inputs: tuple[str, ...]) -> None:
        self._estimator = estimator
        self._declared_inputs = declared_inputs
        classes = getattr(estimator, "classes_", None)
        self._classes: npt.NDArray[Any] | None = None
        if isinstance(classes, np.ndarray) and classes.ndim == 1:
            self._classes = classes
        self._multi_output_classifier = isinstance(classes, list)
        self._has_proba = self._classes is not None and hasattr(estimator, "predict_proba")
        self._signature = self._build_signature()

    @classmethod
    def load(cls, ctx: LoadContext) -> SklearnRuntime:
        path = ctx.find_artifact(cls.artifact_suffixes)
        if path.name.endswith(PICKLE_SUFFIXES):
            estimator = _load_pickle(path, ctx.config.trust)
        else:
            estimator = _load_skops(path, ctx.config.trust)
        if not callable(getattr(estimator, "predict", None)):
            raise ModelLoadError(f"{path.name} holds a {type(estimator).__name__}, no predict()")
        declared = tuple(t.name for t in ctx.config.inputs or ())
        return cls(estimator, declared)

    def _regression_shape(self, n_features: int | None) -> tuple[int, ...]:
        n_outputs = getattr(self._estimator, "n_outputs_", None)
        if isinstance(n_outputs, int):
            return (-1,) if n_outputs == 1 else (-1, n_outputs)
        coef = getattr(self._estimator, "coef_", None)
        if isinstance(coef, np.ndarray):
            return (-1,) if coef.ndim == 1 else (-1, coef.shape[0])
        if n_features is not None:  # probe with one row of zeros
            try:
                sample = np.asarray(self._estimator.predict(np.zeros((1, n_features))))
                return (-1, *(int(d) for d in sample.shape[1:]))
            except Exception:  # a probe only; fall back to 1-D
                pass
        return (-1,)

    def _build_signature(self) -> RuntimeSignature:
        n_features = getattr(self._estimator, "n_features_in_", None)
        n_features = int(n_features) if isinstance(n_features, int | np.integer) else None
        inputs: tuple[TensorSpec, ...] = ()
        if n_features is not None:
            inputs = (TensorSpec("input", "FP64", (-1, n_features), WIDENING_TO_FP64),)
        labels: tuple[str, ...] = ()
        if self._classes is not None:
            outputs = [TensorSpec("label", v2_datatype(self._classes.dtype), (-1,))]
            if self._has_proba:
                outputs.append(TensorSpec("probabilities", "FP64", (-1, len(self._classes))))
            labels = tuple(str(c) for c in self._classes)
        elif self._multi_output_classifier:
            classes: list[npt.NDArray[Any]] = self._estimator.classes_
            datatype = v2_datatype(classes[0].dtype)
            outputs = [TensorSpec("label", datatype, (-1, len(classes)))]
        else:
            outputs = [TensorSpec("prediction", "FP64", self._regression_shape(n_features))]
        return RuntimeSignature(
            inputs=inputs, outputs=tuple(outputs), batchable=True, labels=labels
        )

    def signature(self) -> RuntimeSignature:
        return self._signature

    def _features(self, inputs: Arrays) -> npt.NDArray[Any]:
        if len(inputs) == 1:
            return next(iter(inputs.values()))
        if not self._declared_inputs:
            raise ValueError(
                f"expected one input, got {len(inputs)} ({', '.join(inputs)}); "
                "declare the inputs in model.yaml to have them stacked as columns"
            )
        missing = [name for name in self._declared_inputs if name not in inputs]
        if missing:
            raise ValueError(f"missing inputs: {', '.join(missing)}")
        columns = [inputs[name] for name in self._declared_inputs]
        columns = [c.reshape(-1, 1) if c.ndim == 1 else c for c in columns]
        return np.column_stack(columns)

    def predictor(self, outputs: frozenset[str]) -> Callable[[Arrays], Arrays]:
        """A classifier asked for ``label`` alone calls ``predict`` only, for ``probabilities``
        alone ``predict_proba`` only (each about half the work of both)."""
        if self._has_proba and outputs == {"label"}:
            return self._predict_label
        if self._has_proba and outputs == {"probabilities"}:
            return self._predict_proba
        return self.predict

    def _predict_label(self, inputs: Arrays) -> Arrays:
        label = np.asarray(self._estimator.predict(self._features(inputs)))
        return {"label": _as_bytes_labels(label) if label.dtype.kind in "OSU" else label}

    def _predict_proba(self, inputs: Arrays) -> Arrays:
        x = self._features(inputs)
        return {"probabilities": np.asarray(self._estimator.predict_proba(x), dtype=np.float64)}

    def predict(self, inputs: Arrays) -> Arrays:
        x = self._features(inputs)
        estimator = self._estimator
        if self._classes is None and not self._multi_output_classifier:
            prediction = np.asarray(estimator.predict(x), dtype=np.float64)
            return {"prediction": prediction}
        label = np.asarray(estimator.predict(x))
        out: Arrays = {"label": _as_bytes_labels(label) if label.dtype.kind in "OSU" else label}
        if self._has_proba:
            out["probabilities"] = np.asarray(estimator.predict_proba(x), dtype=np.float64)
        return out

    # ---- ONNX --------------------------------------------------------------------------------

    def _single_input(self) -> int:
        n_features = getattr(self._estimator, "n_features_in_", None)
        if len(self._declared_inputs) > 1 or not isinstance(n_features, int | np.integer):
            raise ConversionError(
                "only an estimator with one input tensor of known width converts to ONNX"
            )
        return int(n_features)

    def export_onnx(self, opset: int | None, precision: Precision, sample: Arrays) -> OnnxExport:
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

        from modelserve.runtimes.onnx_trees import with_exact_thresholds

        if self._multi_output_classifier:
            raise ConversionError("multi-output classifiers do not convert to ONNX")
        n_features = self._single_input()
        trees = _tree_thresholds(self._estimator)
        tensor_type = FloatTensorType if precision == "float32" or trees else DoubleTensorType
        options = {"zipmap": False} if self._classes is not None else {}
        try:
            graph = convert_sklearn(
                self._estimator,
                initial_types=[("input", tensor_type([None, n_features]))],
                options=options,
                target_opset={"": opset or DEFAULT_OPSET, "ai.onnx.ml": 3},
            )
        except Exception as exc:  # skl2onnx raises many types: missing converter, bad option
            raise ConversionError(f"skl2onnx: {type(exc).__name__}: {exc}") from None
        model = graph.SerializeToString()
        if trees and precision == "float64":
            model = with_exact_thresholds(model, trees, cast_input=True)
        if self._classes is not None:
            outputs = [OnnxOutput("label", "label")]
            if self._has_proba:
                outputs.append(OnnxOutput("probabilities", "probabilities"))
        else:
            flat = self._signature.outputs[0].shape == (-1,)
            outputs = [OnnxOutput("prediction", graph.graph.output[0].name, flatten=flat)]
        return OnnxExport(
            model=model,
            converter="skl2onnx",
            versions=distribution_versions("scikit-learn", "skl2onnx", "onnx"),
            outputs=tuple(outputs),
            precision=precision,
            trees=bool(trees),
        )

    def feature_ranges(self) -> list[tuple[float, float]] | None:
        trees = _tree_thresholds(self._estimator)
        n_features = getattr(self._estimator, "n_features_in_", None)
        if not trees or not isinstance(n_features, int | np.integer):
            return None
        return threshold_ranges(trees, int(n_features))


def _trees_of(estimator: Any) -> list[Any]:
    """The fitted ``sklearn.tree`` structures inside an estimator, a tree ensemble or the last
    step of a pipeline."""
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list) and steps:
        return _trees_of(steps[-1][1])
    tree = getattr(estimator, "tree_", None)
    if tree is not None and hasattr(tree, "threshold"):
        return [tree]
    members = getattr(estimator, "estimators_", None)
    if members is None:
        return []
    found = []
    for member in np.asarray(members, dtype=object).ravel():
        found.extend(_trees_of(member))
    return found


def _tree_thresholds(estimator: Any) -> dict[int, list[float]]:
    """Feature index -> every split threshold of the estimator's trees (empty: no trees)."""
    thresholds: dict[int, list[float]] = {}
    for tree in _trees_of(estimator):
        split = tree.feature >= 0
        for feature, value in zip(tree.feature[split], tree.threshold[split], strict=True):
            thresholds.setdefault(int(feature), []).append(float(value))
    return thresholds
