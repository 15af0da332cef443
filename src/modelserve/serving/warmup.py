"""Warmup: run a few requests through a freshly loaded version before it turns READY."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from modelserve.codecs.tensors import V2_TO_NUMPY
from modelserve.config.model import Warmup
from modelserve.errors import ModelLoadError
from modelserve.runtimes.base import Arrays
from modelserve.serving.model import LoadedModel
from modelserve.types import TensorSpec


def _zeros(spec: TensorSpec) -> npt.NDArray[Any]:
    shape = tuple(1 if dim == -1 else dim for dim in spec.shape)
    if spec.datatype == "BYTES":
        array = np.empty(shape, dtype=object)
        array.fill(b"")
        return array
    return np.zeros(shape, dtype=V2_TO_NUMPY[spec.datatype])


def read_sample_file(model_dir: Path, sample_file: str, inputs: tuple[TensorSpec, ...]) -> Arrays:
    """The arrays of a warmup ``sample_file`` (an .npz in the model folder, no pickle), one per
    input."""
    path = (model_dir / sample_file).resolve()
    if model_dir.resolve() not in path.parents or not path.is_file():
        raise ModelLoadError(f"warmup sample_file '{sample_file}' not found in {model_dir}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"warmup sample_file {path}: {exc}") from None
    missing = [spec.name for spec in inputs if spec.name not in arrays]
    if missing:
        raise ModelLoadError(f"warmup sample_file {path} lacks input(s) {missing}")
    return {spec.name: arrays[spec.name] for spec in inputs}


def sample_inputs(model: LoadedModel, warmup: Warmup, model_dir: Path) -> Arrays:
    if warmup.sample_file is None:
        return {spec.name: _zeros(spec) for spec in model.inputs}
    return read_sample_file(model_dir, warmup.sample_file, model.inputs)


def warm_up(model: LoadedModel, warmup: Warmup, model_dir: Path) -> None:
    """Run ``warmup.count`` predictions; any failure is a load failure with the reason."""
    predict = model.predict
    if predict is None:
        raise ModelLoadError(f"model '{model.name}' has no runtime to warm up")
    inputs = sample_inputs(model, warmup, model_dir)
    for _ in range(warmup.count):
        try:
            outputs = predict(inputs)
        except Exception as exc:
            raise ModelLoadError(f"warmup failed: {type(exc).__name__}: {exc}") from exc
        missing = [spec.name for spec in model.outputs if spec.name not in outputs]
        if missing:
            raise ModelLoadError(f"warmup failed: the model did not produce {missing}")
