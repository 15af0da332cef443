"""XGBoost boosters saved with ``Booster.save_model`` (UBJSON or JSON)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import xgboost as xgb

from modelserve.errors import ModelLoadError
from modelserve.runtimes.base import Arrays, LoadContext, Runtime
from modelserve.types import RuntimeSignature, TensorSpec


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
