"""The generic transforms: normalize, layout, topk, threshold, and parameter checking."""

from __future__ import annotations

import numpy as np
import pytest

from modelserve.errors import InvalidArgument, ModelLoadError
from modelserve.pipelines.steps import (
    TRANSFORMS,
    Layout,
    Normalize,
    Params,
    Threshold,
    TopK,
    resolve_transform,
)


def test_every_registered_transform_resolves() -> None:
    for name in TRANSFORMS:
        assert resolve_transform(name).name == name
    with pytest.raises(ModelLoadError, match="unknown transform 'blur'"):
        resolve_transform("blur")


def test_normalize_per_channel_on_hwc_and_chw() -> None:
    images = np.arange(2 * 2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 2, 3)
    step = Normalize(Params("normalize", {"scale": 0.5, "mean": [1, 2, 3], "std": [2, 4, 8]}))
    out = step({"images": images})["images"]
    expected = (images.astype(np.float64) * 0.5 - [1, 2, 3]) / [2, 4, 8]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    chw = Normalize(Params("normalize", {"mean": [1, 2, 3], "channel_axis": 1}))
    planar = images.transpose(0, 3, 1, 2)
    np.testing.assert_allclose(
        chw({"images": planar})["images"], planar - np.array([1, 2, 3]).reshape(1, 3, 1, 1)
    )
    with pytest.raises(InvalidArgument, match="has 3 channels, but mean/std give 2"):
        Normalize(Params("normalize", {"mean": [1, 2]}))({"images": images})


def test_normalize_parameters_are_checked() -> None:
    with pytest.raises(ModelLoadError, match="'std' must not hold zeros"):
        Normalize(Params("normalize", {"std": [1, 0, 1]}))
    with pytest.raises(ModelLoadError, match=r"has no parameter\(s\) \['sclae'\]"):
        Normalize(Params("normalize", {"sclae": 2}))
    with pytest.raises(ModelLoadError, match="'scale' must be a number"):
        Normalize(Params("normalize", {"scale": "1/255"}))


def test_layout_reorders_axes_behind_the_batch() -> None:
    images = np.random.default_rng(0).random((2, 4, 5, 3), dtype=np.float32)
    out = Layout(Params("layout", {"from": "HWC", "to": "CHW"}))({"images": images})["images"]
    assert out.shape == (2, 3, 4, 5) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, images.transpose(0, 3, 1, 2))
    with pytest.raises(ModelLoadError, match="must reorder the letters"):
        Layout(Params("layout", {"from": "HWC", "to": "NCHW"}))
    with pytest.raises(InvalidArgument, match="needs 4 dimensions"):
        Layout(Params("layout", {}))({"images": images[0]})


def test_topk_orders_best_first_with_labels_and_softmax() -> None:
    scores = np.array([[0.1, 0.7, 0.2], [3.0, 1.0, 2.0]], dtype=np.float32)
    step = TopK(Params("topk", {"k": 2, "labels": ["a", "b", "c"]}))
    out = step({"scores": scores})
    np.testing.assert_array_equal(out["indices"], [[1, 2], [0, 2]])
    np.testing.assert_allclose(out["scores"], [[0.7, 0.2], [3.0, 2.0]])
    assert out["labels"].tolist() == [[b"b", b"c"], [b"a", b"c"]]
    soft = TopK(Params("topk", {"k": 5, "softmax": True}))({"scores": scores})
    assert soft["scores"].shape == (2, 3)  # k is cut to the number of classes
    np.testing.assert_allclose(soft["scores"].sum(axis=1), 1.0, rtol=1e-6)


def test_threshold_gives_a_mask() -> None:
    values = np.array([[0.2, 0.5, 0.9]])
    assert Threshold(Params("threshold", {}))({"values": values})["mask"].tolist() == [
        [False, True, True]
    ]
    strict = Threshold(Params("threshold", {"threshold": 0.5, "inclusive": False}))
    assert strict({"values": values})["mask"].tolist() == [[False, False, True]]


def test_output_types_refuse_inputs_they_cannot_take() -> None:
    with pytest.raises(ModelLoadError, match="threshold input 'values' must be one of"):
        Threshold(Params("threshold", {})).output_types({"values": "BYTES"})
    assert TopK(Params("topk", {})).output_types({"scores": "FP16"}) == {
        "scores": "FP16",
        "indices": "INT64",
    }
