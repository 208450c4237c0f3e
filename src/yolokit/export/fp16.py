"""FP16 ONNX: float16 weights and activations inside, float32 ``images`` in and ``output0`` out.

:func:`convert_fp16` uses onnxconverter-common's ``convert_float_to_float16`` with ``keep_io_types=True`` (Cast
nodes at the graph's edges). Kept in float32: the converter's default block list (``Range``, ``Resize``, ``TopK``,
``NonMaxSuppression``, ... : ops ONNX Runtime has no float16 kernel for) and the head's decode
(:func:`yolokit.export.graph_tools.decode_nodes`: anchor grid, DFL, ``dist2bbox``; boxes in pixels need more than
float16's 11 significant bits). On CPUs without native float16 arithmetic ONNX Runtime runs such a graph slower than
FP32; the file is half the size. ``onnx`` and ``onnxconverter_common`` are imported inside the function.
"""

from __future__ import annotations

import logging
import warnings

from yolokit.errors import ExportError

__all__ = ["convert_fp16", "FP16_INSTALL_HINT"]

FP16_INSTALL_HINT = "pip install 'onnxconverter-common>=1.16,<2'"

logger = logging.getLogger(__name__)


def convert_fp16(fp32: bytes) -> bytes:
    """FP32 ONNX bytes (a yolokit export) -> FP16 ONNX bytes with float32 inputs and outputs; metadata kept."""
    import onnx

    from yolokit.export.graph_tools import decode_nodes

    try:
        from onnxconverter_common import float16
    except ImportError as error:
        raise ExportError(f"half=True for ONNX needs onnxconverter-common, which is not installed: run "
                          f"{FP16_INSTALL_HINT}") from error
    proto = onnx.load_from_string(fp32)
    blocked = decode_nodes(proto)
    with warnings.catch_warnings():  # the converter warns about every value it clamps to float16's range
        warnings.simplefilter("ignore")
        converted = float16.convert_float_to_float16(proto, keep_io_types=True, node_block_list=blocked,
                                                     op_block_list=list(float16.DEFAULT_OP_BLOCK_LIST))
    _float32_outputs(converted)
    data = converted.SerializeToString()
    logger.debug("FP16 graph: %d bytes (FP32 %d), %d decode nodes kept in float32", len(data), len(fp32),
                 len(blocked))
    return data


def _float32_outputs(proto: object) -> None:
    """Make every graph output float32 again, in place: with a float32 (blocked) node last, the converter still
    ends the graph with a ``Cast`` to float16; that Cast becomes a Cast to float32."""
    from onnx import TensorProto

    producer = {out: node for node in proto.graph.node for out in node.output}  # type: ignore[attr-defined]
    for output in proto.graph.output:  # type: ignore[attr-defined]
        tensor = output.type.tensor_type
        cast = producer.get(output.name)
        if tensor.elem_type == TensorProto.FLOAT16 and cast is not None and cast.op_type == "Cast":
            for attribute in cast.attribute:
                if attribute.name == "to":
                    attribute.i = TensorProto.FLOAT
            tensor.elem_type = TensorProto.FLOAT
