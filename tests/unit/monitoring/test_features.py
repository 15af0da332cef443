"""The drift window of a version: rows of answered requests collected until ``window.rows``; a
request that crosses the boundary is split so that every window holds exactly that many rows."""

from __future__ import annotations

import numpy as np

from modelserve.config.monitoring import DriftWindow
from modelserve.monitoring.drift import DriftTester
from modelserve.monitoring.events import InferenceEvent
from modelserve.monitoring.features import FeatureWindow, layout_for
from modelserve.monitoring.profile import Profile, profile_feature
from modelserve.types import Tensor, TensorSpec


def _window(rows: int, min_rows: int = 10) -> FeatureWindow:
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, (500, 2))
    profile = Profile(
        500, tuple(profile_feature(f"x[{j}]", reference[:, j].tolist()) for j in range(2)), {}
    )
    layout = layout_for([TensorSpec("x", "FP64", (-1, 2))], None)
    tester = DriftTester(profile, layout.names, None, 0.5)
    return FeatureWindow(layout, tester, DriftWindow(rows=rows, min_rows=min_rows))


def _event(data: np.ndarray) -> InferenceEvent:
    return InferenceEvent(
        id="r",
        model="m",
        version="1",
        inputs=(Tensor("x", "FP64", data.shape, data),),
        outputs=(),
        parameters={},
        status="success",
        code=None,
        error=None,
        arrived_ns=0,
        latency_ns=0,
        transport="http",
        headers={},
    )


def test_requests_inside_a_window_close_nothing() -> None:
    window = _window(100)
    for _ in range(3):
        assert window.add(_event(np.zeros((33, 2)))) == ()
    assert window.rows == 99


def test_a_request_crossing_the_boundary_is_split_and_its_rest_starts_the_next_window() -> None:
    window = _window(100)
    rows = np.random.default_rng(1).normal(0, 1, (400, 2))
    assert window.add(_event(rows[:90])) == ()
    closed = window.add(_event(rows[90:335]))  # 10 to close the first, 200 more, 35 left
    assert [result.rows for result in closed] == [100, 100, 100]
    assert window.rows == 35
    # the rest is the start of the next window, not lost and not counted twice
    closed = window.add(_event(rows[335:400]))
    assert [result.rows for result in closed] == [100] and window.rows == 0
    # the split windows test exactly the rows they were given
    whole = _window(100)
    reference = [whole.add(_event(rows[i : i + 100]))[0] for i in range(0, 400, 100)]
    assert [r.features["x[0]"].value for r in reference][-1] == closed[0].features["x[0]"].value


def test_a_window_never_closes_below_its_min_rows() -> None:
    window = _window(20, min_rows=50)  # min_rows above rows: the window holds min_rows
    assert window.add(_event(np.zeros((40, 2)))) == ()
    closed = window.add(_event(np.zeros((70, 2))))
    assert [result.rows for result in closed] == [50, 50] and window.rows == 10
