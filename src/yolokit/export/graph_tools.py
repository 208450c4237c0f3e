"""Small rewrites and queries on yolokit's exported ONNX graphs (``onnx.ModelProto``), used by INT8, FP16 and NMS.

- :func:`head_prefix` / :func:`decode_nodes`: the Detect head's box/score decode (DFL softmax and its fixed conv,
  anchor grid, ``dist2bbox`` arithmetic, the final ``Sigmoid`` / ``Mul`` / ``Concat``), found by node name. The
  exporter names nodes by module path: ``/model.23/cv2.0/cv2.0.0/conv/Conv`` is a head convolution (kept
  quantizable), while ``/model.23/Concat_3``, ``/model.23/Sigmoid`` (nodes directly under the head) and
  ``/model.22/dfl/...`` are the decode, which INT8 and FP16 leave in float32.
- :func:`fold_static_dims`: replaces reads of static dimensions (``Gather(Shape(x), i)`` where dimension ``i`` of
  ``x`` is known) by constants, and reads the batch size from the graph input instead of from feature maps. The
  anchor grid then becomes a constant in ONNX Runtime, and a quantized graph no longer dequantizes (and
  transposes back to NCHW) whole feature maps only to read their shape.
- :func:`remove_dead_nodes`: drops nodes whose outputs nobody reads.

``onnx`` is imported inside the functions.
"""

from __future__ import annotations

import re
from typing import Any

from yolokit.errors import ExportError

__all__ = ["head_prefix", "decode_nodes", "fold_static_dims", "remove_dead_nodes", "tensor_dims"]

# Head sub-modules whose convolutions are learned layers (quantizable); everything else under the head is decode.
# A Classify head's learned layers are its 1x1 ``conv`` and its ``linear``; its pool, flatten and softmax stay float.
_HEAD_LAYERS = re.compile(r"(one2one_)?cv[23]\.\d+$|conv$|linear$")


def head_prefix(proto: Any) -> str:
    """``"model.N"``: the module path of the Detect head (the highest layer index among the node names).

    Raises:
        ExportError: no node carries a ``/model.N/`` module path (not a graph written by yolokit's export).
    """
    indices = [int(m.group(1)) for node in proto.graph.node if (m := re.match(r"/model\.(\d+)/", node.name))]
    if not indices:
        raise ExportError("the ONNX graph has no '/model.N/' node names (not written by yolokit's export_onnx): "
                          "re-export it with yolokit")
    return f"model.{max(indices)}"


def decode_nodes(proto: Any) -> list[str]:
    """Names of the head's decode nodes (see the module docstring), in graph order.

    Raises:
        ExportError: none found (the graph's names do not follow yolokit's export, so the decode cannot be located).
    """
    head = head_prefix(proto)
    found = []
    for node in proto.graph.node:
        parts = node.name.split("/")
        if len(parts) >= 3 and parts[1] == head and not (len(parts) > 3 and _HEAD_LAYERS.match(parts[2])):
            found.append(node.name)
    if not found:
        raise ExportError(f"no decode nodes found under '/{head}/' in the ONNX graph: re-export it with yolokit")
    return found


def tensor_dims(proto: Any) -> dict[str, list[int | str | None]]:
    """Tensor name -> dimensions known from ``value_info``, inputs and outputs (int, symbol name or None)."""
    dims: dict[str, list[int | str | None]] = {}
    for info in (*proto.graph.value_info, *proto.graph.input, *proto.graph.output):
        tensor = info.type.tensor_type
        if tensor.HasField("shape"):
            dims[info.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                               for d in tensor.shape.dim]
    return dims


def _constants(proto: Any) -> dict[str, Any]:
    """Tensor name -> numpy value, for initializers and ``Constant`` node outputs."""
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _shape_range(node: Any, rank: int) -> tuple[int, int]:
    """``(start, end)`` of a ``Shape`` node (opset 15 attributes), normalised to ``0..rank``."""
    attrs = {a.name: a.i for a in node.attribute}
    start, end = attrs.get("start", 0), attrs.get("end", rank)
    start, end = (start + rank if start < 0 else start), (end + rank if end < 0 else end)
    return max(0, min(start, rank)), max(0, min(end, rank))


def _rename_input(proto: Any, old: str, new: str) -> None:
    for node in proto.graph.node:
        for k, name in enumerate(node.input):
            if name == old:
                node.input[k] = new


def fold_static_dims(proto: Any) -> int:
    """Fold static dimension reads into constants, in place (see the module docstring); returns how many.

    ``proto`` must carry shape information (``value_info``: run ONNX or symbolic shape inference first). Outputs
    are unchanged for every input the graph accepts.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    graph = proto.graph
    dims, consts = tensor_dims(proto), _constants(proto)
    producer = {out: node for node in graph.node for out in node.output}
    image = graph.input[0].name
    batch = (dims.get(image) or [None])[0]
    batch_shape = image + "_batch_shape"
    folded, need_batch_shape = 0, False
    for node in list(graph.node):
        source = producer.get(node.input[0]) if node.op_type == "Gather" and node.input else None
        index = consts.get(node.input[1]) if source is not None and len(node.input) > 1 else None
        if source is None or source.op_type != "Shape" or index is None or source.input[0] not in dims:
            continue
        shape = dims[source.input[0]]
        start, end = _shape_range(source, len(shape))
        picked = [shape[start:end][int(i)] for i in np.atleast_1d(index)]
        if all(isinstance(v, int) and v > 0 for v in picked):
            value = np.array(picked if index.ndim else picked[0], dtype=np.int64)
            name = node.output[0] + "_static"
            graph.initializer.append(numpy_helper.from_array(value, name))
            _rename_input(proto, node.output[0], name)
            folded += 1
        elif index.ndim == 0 and start + int(index) == 0 and batch is not None and picked[0] == batch \
                and source.input[0] != image:
            node.input[0] = batch_shape  # the batch size of every feature map is the input's
            need_batch_shape, folded = True, folded + 1
    if need_batch_shape:
        graph.node.insert(0, helper.make_node("Shape", [image], [batch_shape], name=image + "_batch_shape_node"))
    remove_dead_nodes(proto)
    return folded


def remove_dead_nodes(proto: Any) -> int:
    """Remove, in place, nodes none of whose outputs is read by another node or is a graph output (then the
    initializers nobody reads); returns how many nodes.

    (ONNX operators have no side effects, so such nodes cannot change the outputs.)
    """
    graph, removed = proto.graph, 0
    while True:
        used = {name for node in graph.node for name in node.input} | {out.name for out in graph.output}
        keep = [node for node in graph.node if any(out in used for out in node.output)]
        if len(keep) == len(graph.node):
            read = {name for node in graph.node for name in node.input} | {out.name for out in graph.output}
            initializers = [init for init in graph.initializer if init.name in read]
            if len(initializers) != len(graph.initializer):
                del graph.initializer[:]
                graph.initializer.extend(initializers)
            return removed
        removed += len(graph.node) - len(keep)
        del graph.node[:]
        graph.node.extend(keep)
