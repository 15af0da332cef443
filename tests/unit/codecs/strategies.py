"""Hypothesis strategies for the codec tests: valid tensors of every V2 datatype (as the arrays a
client would send), and arbitrary JSON values for hostile bodies."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modelserve.codecs.tensors import V2_TO_NUMPY

ALL = sorted(V2_TO_NUMPY)
NUMERIC = [datatype for datatype in ALL if datatype != "BYTES"]
shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


def object_array(items: list[bytes], shape: tuple[int, ...]) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array.reshape(shape)


@st.composite
def arrays(draw: st.DrawFn, datatype: str, for_json: bool = False) -> np.ndarray:
    """An array of ``datatype``. JSON carries neither NaN nor infinities, and its BYTES are
    strings, so ``for_json`` keeps to what JSON can say."""
    shape = draw(shapes)
    count = int(np.prod(shape))
    if datatype == "BYTES":
        items = st.text(max_size=6).map(str.encode) if for_json else st.binary(max_size=6)
        return object_array(draw(st.lists(items, min_size=count, max_size=count)), shape)
    elements: dict[str, Any] | None = None
    if for_json and datatype.startswith("FP"):
        elements = {"allow_nan": False, "allow_infinity": False}
    return draw(hnp.arrays(V2_TO_NUMPY[datatype], shape, elements=elements))


@st.composite
def named_tensors(
    draw: st.DrawFn, datatypes: list[str] = ALL, for_json: bool = False
) -> list[tuple[str, str, np.ndarray]]:
    """One to three (name, datatype, array) with distinct names."""
    names = draw(
        st.lists(
            st.text("abcxyz_0123456789", min_size=1, max_size=8),
            min_size=1,
            max_size=3,
            unique=True,
        )
    )
    tensors = []
    for name in names:
        datatype = draw(st.sampled_from(datatypes))
        tensors.append((name, datatype, draw(arrays(datatype, for_json))))
    return tensors


def assert_same_tensor(data: np.ndarray, datatype: str, expected: np.ndarray) -> None:
    """``data`` (decoded) holds ``expected``'s values with ``datatype``'s dtype and its shape."""
    assert data.dtype == V2_TO_NUMPY[datatype], (data.dtype, datatype)
    assert data.shape == expected.shape
    if datatype == "BYTES":
        assert data.tolist() == expected.tolist()
    else:
        np.testing.assert_array_equal(data, expected)  # NaNs in the same places count as equal
