"""LightGBM boosters saved as text with ``Booster.save_model``."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

from modelserve.errors import ModelLoadError
from modelserve.runtimes.base import WIDENING_TO_FP64, Arrays, LoadContext, Runtime
from modelserve.types import RuntimeSignature, TensorSpec


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
