"""The Triton "simple" example as a modelserve python model: sum and difference of two inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt


class AddSub:
    def load(self, version_dir: Path, parameters: dict[str, Any]) -> None:
        self.version_dir = version_dir

    def predict(self, inputs: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        a = np.asarray(inputs["INPUT0"], dtype=np.float32)
        b = np.asarray(inputs["INPUT1"], dtype=np.float32)
        return {"OUTPUT0": a + b, "OUTPUT1": a - b}
