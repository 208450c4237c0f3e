"""The weights inside an ONNX graph, per consuming node, with INT8 initializers dequantized.

    model = onnx.load_from_string(data)
    weights = node_weights(model)    # {"/model.0/conv/Conv.weight": NodeWeight(values fp32, stored "int8", ...)}
    precision_of(weights)            # "int8" | "fp16" | "fp32"

A graph's tensors are addressed by the node that uses them (``<node name>.weight`` / ``.bias``, or ``:in<k>``)
rather than by initializer name: an INT8 graph renames its initializers (``w_quantized``, ``w_scale``...) but keeps
the names of the Conv / Gemm / MatMul nodes of the float graph it was made from, so the two line up node by node.
Inputs are followed through ``Identity`` / ``Cast`` (the exporter shares identical tensors that way) and through
``DequantizeLinear`` (QDQ INT8 graphs: ``(q - zero_point) * scale``, per tensor or per ``axis``). QOperator nodes
(``QLinearConv``, ``QLinearMatMul``) have their weight inputs dequantized the same way (a QLinearConv's int32 bias
as ``B * x_scale * w_scale``), keyed by the node name without the quantizer's ``_quant`` suffix.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["NodeWeight", "node_weights", "precision_of", "parameter_count"]

# op type -> {input slot: role}; slots are the float weight inputs (QLinear ops: (value, scale, zero point) slots)
_FLOAT_OPS = {"Conv": {1: "weight", 2: "bias"}, "ConvTranspose": {1: "weight", 2: "bias"},
              "Gemm": {1: "weight", 2: "bias"}, "MatMul": {1: "weight"}}
_QLINEAR_OPS = {"QLinearConv": {3: ("weight", 4, 5)}, "QLinearMatMul": {3: ("weight", 4, 5)}}
_PASS_THROUGH = ("Identity", "Cast")
_QUANTIZED = (np.int8, np.uint8)


@dataclasses.dataclass
class NodeWeight:
    """A weight input of a node: ``values`` as float32 (dequantized for INT8), the ``stored`` dtype name."""

    values: np.ndarray
    stored: str  # "float32", "float16", "int8", "uint8", ...
    source: str = ""  # the initializer (or Constant output) holding it

    @property
    def quantized(self) -> bool:
        return self.stored in ("int8", "uint8")


class _Graph:
    """Constant tensors of a graph (initializers and Constant nodes) and which node produces each value."""

    def __init__(self, model: Any) -> None:
        from onnx import numpy_helper

        graph = model.graph
        self.constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
        self.producers: dict[str, Any] = {}
        for node in graph.node:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        self.constants[node.output[0]] = numpy_helper.to_array(attr.t)
            for out in node.output:
                self.producers[out] = node
        self.nodes = list(graph.node)

    def resolve(self, name: str) -> NodeWeight | None:
        """The constant behind a node input (through Identity / Cast / DequantizeLinear), or None if computed."""
        for _ in range(16):  # chains are short; the bound guards against a malformed cyclic graph
            if name in self.constants:
                array = self.constants[name]
                return NodeWeight(array.astype(np.float32), str(array.dtype), name)
            node = self.producers.get(name)
            if node is None:
                return None
            if node.op_type == "DequantizeLinear":
                return self.dequantize(node.input[0], node.input[1], node.input[2] if len(node.input) > 2 else "",
                                       _axis(node))
            if node.op_type not in _PASS_THROUGH:
                return None
            name = node.input[0]
        return None

    def dequantize(self, value: str, scale: str, zero_point: str, axis: int) -> NodeWeight | None:
        """``(q - zero_point) * scale`` of constant inputs (scale / zero point per tensor or along ``axis``)."""
        if value not in self.constants or scale not in self.constants:
            return None
        q = self.constants[value]
        s = self.constants[scale].astype(np.float32)
        zp = self.constants[zero_point].astype(np.float32) if zero_point in self.constants else np.zeros_like(s)
        if s.ndim == 1 and q.ndim > 1 and s.size > 1:
            shape = [1] * q.ndim
            shape[axis % q.ndim] = s.size
            s, zp = s.reshape(shape), zp.reshape(shape)
        return NodeWeight(((q.astype(np.float32) - zp) * s).astype(np.float32), str(q.dtype), value)


def _axis(node: Any) -> int:
    for attr in node.attribute:
        if attr.name == "axis":
            return int(attr.i)
    return 1


def _base_name(node: Any) -> str:
    name = node.name or node.output[0]
    return name[: -len("_quant")] if node.op_type in _QLINEAR_OPS and name.endswith("_quant") else name


def node_weights(model: Any) -> dict[str, NodeWeight]:
    """Every constant weight input of the graph's Conv / Gemm / MatMul (and QLinear) nodes, keyed by node."""
    graph = _Graph(model)
    out: dict[str, NodeWeight] = {}
    for node in graph.nodes:
        base = _base_name(node)
        if node.op_type in _FLOAT_OPS:
            for slot, role in _FLOAT_OPS[node.op_type].items():
                if slot < len(node.input) and node.input[slot]:
                    weight = graph.resolve(node.input[slot])
                    if weight is not None:
                        out[f"{base}.{role}"] = weight
        elif node.op_type in _QLINEAR_OPS:
            for slot, (role, scale, zero_point) in _QLINEAR_OPS[node.op_type].items():
                if scale < len(node.input):
                    weight = graph.dequantize(node.input[slot], node.input[scale], node.input[zero_point],
                                              axis=0)
                    if weight is not None:
                        out[f"{base}.{role}"] = weight
            bias = _qlinear_conv_bias(graph, node)
            if bias is not None:
                out[f"{base}.bias"] = bias
    return out


def _qlinear_conv_bias(graph: _Graph, node: Any) -> NodeWeight | None:
    """A ``QLinearConv``'s int32 bias (input 8) as float: ``B * x_scale * w_scale`` (zero point 0, per channel)."""
    inputs = list(node.input)
    if node.op_type != "QLinearConv" or len(inputs) < 9 or not inputs[8]:
        return None
    if any(name not in graph.constants for name in (inputs[8], inputs[1], inputs[4])):
        return None
    q = graph.constants[inputs[8]]
    scale = graph.constants[inputs[1]].astype(np.float32) * graph.constants[inputs[4]].astype(np.float32)
    return NodeWeight((q.astype(np.float32) * scale).astype(np.float32), str(q.dtype), inputs[8])


def precision_of(weights: dict[str, NodeWeight]) -> str:
    """``int8`` when any weight matrix (2+ dims) is stored as int8/uint8, else the dtype holding most elements
    (``fp16`` / ``bf16`` / ``fp32``)."""
    if any(w.quantized and w.values.ndim >= 2 for w in weights.values()):
        return "int8"
    counts: dict[str, int] = {}
    for w in weights.values():
        counts[w.stored] = counts.get(w.stored, 0) + int(w.values.size)
    return float_precision(counts)


def float_precision(counts: dict[str, int]) -> str:
    """``fp16`` / ``bf16`` / ``fp32`` from element counts per dtype name (``float16``, ``torch.bfloat16``...)."""
    floats = {k.replace("torch.", ""): v for k, v in counts.items() if "float" in k}
    if not floats:
        return "fp32"
    top = max(floats, key=lambda k: floats[k])
    return {"float16": "fp16", "half": "fp16", "bfloat16": "bf16"}.get(top, "fp32")


def parameter_count(weights: dict[str, NodeWeight]) -> int:
    """Elements of the graph's weight tensors, each stored tensor counted once (a float export has BatchNorm
    folded into its convolutions, so this is below the PyTorch model's count)."""
    return sum(int(w.values.size) for w in {w.source or key: w for key, w in weights.items()}.values())
