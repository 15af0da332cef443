"""What the runtime tests load: a LoadContext over a model folder, feature rows, and the
artifact builders of examples/build_examples.py (fixed seeds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modelserve.config.model import ModelConfig, load_model_config
from modelserve.runtimes.base import LoadContext
from tests.harness import example_builder

build = example_builder()
"""examples/build_examples.py: build_iris_onnx, fit_logistic_regression, ..."""


def make_ctx(model_dir: Path, version: str = "1", **config: Any) -> LoadContext:
    """A context for ``model_dir/version`` (made if missing) with ``config`` as model.yaml."""
    version_dir = model_dir / version
    version_dir.mkdir(parents=True, exist_ok=True)
    return LoadContext(
        model_name=model_dir.name,
        version=version,
        model_dir=model_dir,
        version_dir=version_dir,
        config=ModelConfig(**config),
    )


def folder_ctx(model_dir: Path, version: str = "1") -> LoadContext:
    """The context the repository would give ``model_dir/version``: its own model.yaml."""
    config = load_model_config(model_dir)
    return LoadContext(model_dir.name, version, model_dir, model_dir / version, config)


def features(n: int = 7, width: int = 4, dtype: Any = np.float64) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((n, width)).astype(dtype)
