"""Tree ensembles in ONNX that decide in float64, with the native model's exact split thresholds.

The ai.onnx.ml tree operators hold their thresholds as float32 attributes by default, so a row
whose feature value lies between a threshold and its float32 rounding goes down the other branch
than in the native model: the prediction jumps. From ai.onnx.ml opset 3 on, the thresholds may be
a float64 tensor (``nodes_values_as_tensor``) and onnxruntime then compares in float64. This
module rewrites a converter's float32 graph that way, taking each threshold's exact value from
the native model (matched by feature and float32 value; an ambiguous match refuses the rewrite).

Two native behaviours exist, hence ``cast_input``: scikit-learn casts its input to float32 and
compares it with float64 thresholds (so the graph keeps its float32 input and casts it to float64
in front of the trees); LightGBM compares float64 inputs (so the graph's input becomes float64).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from modelserve.errors import ConversionError

__all__ = ["TREE_OPS", "with_exact_thresholds"]

TREE_OPS = frozenset({"TreeEnsembleRegressor", "TreeEnsembleClassifier"})
ML_DOMAIN = "ai.onnx.ml"


def _bits(value: float) -> int:
    return int(np.array(value, dtype=np.float32).view(np.int32))


class _Thresholds:
    """The native thresholds by feature, found again from a converter's float32 values. A
    converter may round a threshold to the nearest float32 or to a neighbour of it (skl2onnx
    rounds so that float32 comparisons keep their side), so a value matches the native
    thresholds within one float32 step; it must match exactly one."""

    def __init__(self, thresholds: Mapping[int, Iterable[float]]) -> None:
        self._by_bits: dict[tuple[int, int], set[float]] = {}
        for feature, values in thresholds.items():
            for value in values:
                key = (int(feature), _bits(value))
                self._by_bits.setdefault(key, set()).add(float(value))

    def exact(self, feature: int, value: float) -> float:
        bits = _bits(value)
        found: set[float] = set()
        for step in (-1, 0, 1):
            found |= self._by_bits.get((feature, bits + step), set())
        if not found:
            raise ConversionError(
                f"feature {feature}: threshold {value} of the ONNX graph is not one of the "
                "native model's thresholds"
            )
        if len(found) > 1:
            raise ConversionError(
                f"feature {feature}: several thresholds round to the float32 value {value}; "
                "their float64 values cannot be told apart"
            )
        return found.pop()


def _rewrite_node(node: onnx.NodeProto, thresholds: _Thresholds) -> None:
    attributes = {a.name: a for a in node.attribute}
    if "nodes_values" not in attributes:
        raise ConversionError(f"tree node {node.name or node.op_type} has no float thresholds")
    values = helper.get_attribute_value(attributes["nodes_values"])
    features = helper.get_attribute_value(attributes["nodes_featureids"])
    modes = helper.get_attribute_value(attributes["nodes_modes"])
    exact: list[float] = []
    for value, feature, mode in zip(values, features, modes, strict=True):
        if mode == b"LEAF":
            exact.append(float(value))
        else:
            exact.append(thresholds.exact(int(feature), float(value)))
    kept = [a for a in node.attribute if a.name != "nodes_values"]
    del node.attribute[:]
    node.attribute.extend(kept)
    tensor = numpy_helper.from_array(np.asarray(exact, dtype=np.float64))
    node.attribute.append(helper.make_attribute("nodes_values_as_tensor", tensor))


def with_exact_thresholds(
    model_bytes: bytes, thresholds: Mapping[int, Iterable[float]], cast_input: bool
) -> bytes:
    """The graph with every tree node deciding in float64 on the native thresholds
    (``thresholds``: feature index -> the native model's split thresholds). ConversionError when
    the graph cannot be rewritten so."""
    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    trees = [node for node in graph.node if node.domain == ML_DOMAIN and node.op_type in TREE_OPS]
    if not trees:
        raise ConversionError("the graph has no tree ensemble to run in float64")
    lookup = _Thresholds(thresholds)
    graph_inputs = {value.name: value for value in graph.input}
    for node in trees:
        _rewrite_node(node, lookup)
    if cast_input:
        nodes = list(graph.node)
        del graph.node[:]
        for node in nodes:
            if node in trees:
                source = node.input[0]
                cast_name = f"{source}_as_double_{len(graph.node)}"
                graph.node.append(
                    helper.make_node(
                        "Cast", [source], [cast_name], to=TensorProto.DOUBLE, name=cast_name
                    )
                )
                node.input[0] = cast_name
            graph.node.append(node)
    else:
        for node in trees:
            source = graph_inputs.get(node.input[0])
            if source is None:
                raise ConversionError(
                    "a tree node does not read the graph's input directly; cannot feed it float64"
                )
            source.type.tensor_type.elem_type = TensorProto.DOUBLE
        consumers = {n.input[0] for n in graph.node if n not in trees and n.input}
        if consumers & {n.input[0] for n in trees}:
            raise ConversionError("the graph's input feeds other operators than the trees")
    for opset in model.opset_import:
        if opset.domain == ML_DOMAIN:
            opset.version = max(opset.version, 3)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ConversionError(f"the float64 tree graph is not valid ONNX: {exc}") from None
    return bytes(model.SerializeToString())
