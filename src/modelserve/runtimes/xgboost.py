"""XGBoost boosters saved with ``Booster.save_model`` (UBJSON or JSON)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import xgboost as xgb

from modelserve.errors import ConversionError, ModelLoadError
from modelserve.runtimes.base import (
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

MAX_OPSET = 15
"""The highest ONNX opset onnxmltools' tree converters write."""


def _output_shape(config: dict[str, Any]) -> tuple[int, ...]:
    learner = config["learner"]
    objective = learner["objective"]["name"]
    params = learner.get("learner_model_param", {})
    num_class = int(params.get("num_class", 0) or 0)
    num_target = int(params.get("num_target", 1) or 1)
    if objective == "multi:softprob" and num_class > 1:
        return (-1, num_class)
    if num_target > 1:
        return (-1, num_target)
    return (-1,)


class XGBoostRuntime(Runtime):
    platform = "xgboost"
    artifact_suffixes = (".ubj", ".xgb.json", ".json")

    def __init__(self, booster: xgb.Booster) -> None:
        self._booster = booster
        try:
            config = json.loads(booster.save_config())
            shape = _output_shape(config)
            self._objective = str(config["learner"]["objective"]["name"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"cannot read the booster configuration: {exc}") from None
        self._signature = RuntimeSignature(
            inputs=(TensorSpec("input", "FP32", (-1, booster.num_features())),),
            outputs=(TensorSpec("prediction", "FP32", shape),),
            batchable=True,
        )

    @classmethod
    def load(cls, ctx: LoadContext) -> XGBoostRuntime:
        path = ctx.find_artifact(cls.artifact_suffixes)
        nthread = ctx.int_parameter("nthread", 1)
        booster = xgb.Booster()
        try:
            booster.load_model(str(path))
            booster.set_param("nthread", str(nthread))
        except xgb.core.XGBoostError as exc:
            raise ModelLoadError(f"xgboost cannot load {path.name}: {exc}") from None
        return cls(booster)

    def signature(self) -> RuntimeSignature:
        return self._signature

    def predict(self, inputs: Arrays) -> Arrays:
        if len(inputs) != 1:
            raise ValueError(f"expected one input, got {len(inputs)} ({', '.join(inputs)})")
        x = next(iter(inputs.values()))
        prediction = self._booster.inplace_predict(x)
        return {"prediction": np.asarray(prediction, dtype=np.float32)}

    # ---- ONNX --------------------------------------------------------------------------------

    def _onnx_output(self) -> OnnxOutput:
        objective = self._objective
        if objective == "binary:logistic":
            return OnnxOutput("prediction", "probabilities", column=1)
        if objective == "multi:softprob":
            return OnnxOutput("prediction", "probabilities")
        if objective == "multi:softmax":
            return OnnxOutput("prediction", "label")
        if objective.startswith(("reg:", "count:", "rank:")):
            flat = self._signature.outputs[0].shape == (-1,)
            return OnnxOutput("prediction", "variable", flatten=flat)
        raise ConversionError(f"XGBoost objective {objective} has no ONNX conversion")

    def export_onnx(self, opset: int | None, precision: Precision, sample: Arrays) -> OnnxExport:
        from onnxmltools.convert import convert_xgboost
        from onnxmltools.convert.common.data_types import FloatTensorType

        if precision == "float64":
            raise ConversionError(
                "XGBoost decides in float32 itself, so its float32 graph is already exact"
            )
        output = self._onnx_output()
        n_features = self._booster.num_features()
        try:
            graph = convert_xgboost(
                self._booster,
                initial_types=[("input", FloatTensorType([None, n_features]))],
                target_opset=min(opset or MAX_OPSET, MAX_OPSET),
            )
        except Exception as exc:  # onnxmltools raises many types
            raise ConversionError(f"onnxmltools: {type(exc).__name__}: {exc}") from None
        return OnnxExport(
            model=graph.SerializeToString(),
            converter="onnxmltools",
            versions=distribution_versions("xgboost", "onnxmltools", "onnx"),
            outputs=(output,),
            precision="float32",
        )

    def feature_ranges(self) -> list[tuple[float, float]] | None:
        thresholds: dict[int, list[float]] = {}

        def walk(node: dict[str, Any]) -> None:
            if "split" in node:
                feature = str(node["split"]).lstrip("f")
                if feature.isdigit():
                    thresholds.setdefault(int(feature), []).append(float(node["split_condition"]))
            for child in node.get("children", ()):
                walk(child)

        for tree in self._booster.get_dump(dump_format="json"):
            walk(json.loads(tree))
        if not thresholds:
            return None
        return threshold_ranges(thresholds, self._booster.num_features())
