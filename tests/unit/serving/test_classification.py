"""The classification extension's answer, in Triton's format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelserve.config.model import ModelConfig
from modelserve.errors import ModelLoadError
from modelserve.serving.classification import classify, load_labels
from modelserve.types import TensorSpec


def test_top_k_per_row_with_labels_as_triton_prints_them() -> None:
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]], dtype=np.float32)
    out = classify(scores, 2, True, ("a", "b"))
    assert out.shape == (2, 2)
    assert out.tolist() == [
        [b"0.700000:1:b", b"0.200000:2"],
        [b"0.500000:0:a", b"0.250000:1:b"],
    ]


def test_unbatched_integer_scores_and_k_past_the_classes() -> None:
    out = classify(np.array([[3], [9], [1]], dtype=np.int64), 10, False, ())
    assert out.tolist() == [b"9:1", b"3:0", b"1:2"]


def test_labels_come_from_the_output_file_then_labels_txt_then_the_artifact(
    tmp_path: Path,
) -> None:
    outputs = (TensorSpec("y", "FP32", (-1, 2)), TensorSpec("z", "FP32", (-1, 2)))
    assert load_labels(tmp_path, ModelConfig(), outputs, ("p", "q")) == {
        "y": ("p", "q"),
        "z": ("p", "q"),
    }
    label = (TensorSpec("label", "INT64", (-1,)),)
    assert load_labels(tmp_path, ModelConfig(), label, ("p", "q")) == {}
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    (tmp_path / "mine.txt").write_text("one\ntwo\n")
    config = ModelConfig.model_validate(
        {"outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2], "labels": "mine.txt"}]}
    )
    assert load_labels(tmp_path, config, outputs, ("p", "q")) == {
        "y": ("one", "two"),
        "z": ("cat", "dog"),
    }
    (tmp_path / "mine.txt").unlink()
    with pytest.raises(ModelLoadError, match=r"labels file 'mine\.txt' not found"):
        load_labels(tmp_path, config, outputs, ())
