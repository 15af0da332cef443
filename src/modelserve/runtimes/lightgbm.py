"""LightGBM boosters saved as text with ``Booster.save_model``."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np

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
)
from modelserve.types import RuntimeSignature, TensorSpec

MAX_OPSET = 15
"""The highest ONNX opset onnxmltools' tree converters write."""


class LightGBMRuntime(Runtime):
    platform = "lightgbm"
    artifact_suffixes = (".lgb.txt", ".txt")

    def __init__(self, booster: lgb.Booster, num_threads: int) -> None:
        self._booster = booster
        self._num_threads = num_threads
        per_iteration = booster.num_model_per_iteration()
        shape = (-1, per_iteration) if per_iteration > 1 else (-1,)
        self._signature = RuntimeSignature(
            inputs=(TensorSpec("input", "FP64", (-1, booster.num_feature()), WIDENING_TO_FP64),),
            outputs=(TensorSpec("prediction", "FP64", shape),),
            batchable=True,
        )

    @classmethod
    def load(cls, ctx: LoadContext) -> LightGBMRuntime:
        path = ctx.find_artifact(cls.artifact_suffixes)
        num_threads = ctx.int_parameter("num_threads", 1)
        try:
            booster = lgb.Booster(model_file=str(path))
        except lgb.basic.LightGBMError as exc:
            raise ModelLoadError(f"lightgbm cannot load {path.name}: {exc}") from None
        return cls(booster, num_threads)

    def signature(self) -> RuntimeSignature:
        return self._signature

    def predict(self, inputs: Arrays) -> Arrays:
        if len(inputs) != 1:
            raise ValueError(f"expected one input, got {len(inputs)} ({', '.join(inputs)})")
        x = next(iter(inputs.values()))
        prediction = self._booster.predict(x, num_threads=self._num_threads)
        return {"prediction": np.asarray(prediction, dtype=np.float64)}

    # ---- ONNX --------------------------------------------------------------------------------

    def _onnx_output(self) -> OnnxOutput:
        objective = str(self._booster.dump_model().get("objective", ""))
        if objective.startswith("binary"):
            return OnnxOutput("prediction", "probabilities", column=1)
        if objective.startswith(("multiclass", "softmax")):
            return OnnxOutput("prediction", "probabilities")
        flat = self._signature.outputs[0].shape == (-1,)
        return OnnxOutput("prediction", "variable", flatten=flat)

    def export_onnx(self, opset: int | None, precision: Precision, sample: Arrays) -> OnnxExport:
        from onnxmltools.convert import convert_lightgbm
        from onnxmltools.convert.common.data_types import FloatTensorType

        from modelserve.runtimes.onnx_trees import with_exact_thresholds

        n_features = self._booster.num_feature()
        try:
            graph = convert_lightgbm(
                self._booster,
                initial_types=[("input", FloatTensorType([None, n_features]))],
                target_opset=min(opset or MAX_OPSET, MAX_OPSET),
                zipmap=False,
            )
        except Exception as exc:  # onnxmltools raises many types
            raise ConversionError(f"onnxmltools: {type(exc).__name__}: {exc}") from None
        model = graph.SerializeToString()
        if precision == "float64":
            model = with_exact_thresholds(model, self._thresholds(), cast_input=False)
        return OnnxExport(
            model=model,
            converter="onnxmltools",
            versions=distribution_versions("lightgbm", "onnxmltools", "onnx"),
            outputs=(self._onnx_output(),),
            precision=precision,
            trees=True,
        )

    def _thresholds(self) -> dict[int, list[float]]:
        thresholds: dict[int, list[float]] = {}

        def walk(node: dict[str, Any]) -> None:
            if "split_feature" in node:
                if node.get("decision_type") == "<=":
                    feature = int(node["split_feature"])
                    thresholds.setdefault(feature, []).append(float(node["threshold"]))
                walk(node["left_child"])
                walk(node["right_child"])

        for tree in self._booster.dump_model()["tree_info"]:
            walk(tree["tree_structure"])
        return thresholds

    def feature_ranges(self) -> list[tuple[float, float]] | None:
        infos = self._booster.dump_model().get("feature_infos", {})
        ranges = []
        for info in infos.values():
            low, high = info.get("min_value"), info.get("max_value")
            if not isinstance(low, int | float) or not isinstance(high, int | float):
                return None
            margin = max((high - low) / 4, 1e-3)
            ranges.append((float(low) - margin, float(high) + margin))
        return ranges or None
