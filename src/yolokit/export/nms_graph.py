"""Embedded NMS: an ONNX post-processing graph appended to a detector's graph, so the file's output is final.

``append_nms(proto, conf=, iou=, max_det=, agnostic=)`` takes a yolokit graph whose ``output0`` is ``(B, 4+nc, A)``
(``cx, cy, w, h`` in input pixels + class probabilities: v8/v11 and YOLO26's one-to-many head, in any precision)
and returns a graph whose ``output0`` is ``(B, max_det, 6)`` ``[x1, y1, x2, y2, score, class]`` per image, sorted by
decreasing score and padded with zero rows. The semantics are those of
:func:`yolokit.ops.nms.non_max_suppression` with ``multi_label=False`` (each box takes its best class; rows with
``score > conf`` only; a box suppresses another of the same class, or of any class with ``agnostic``, when their
IoU is ``> iou``; at most ``max_det`` per image). In the graph: each box's score is kept for its best class only
(``(B, nc, A)``, zeros elsewhere; ``(B, 1, A)`` when agnostic) and ONNX ``NonMaxSuppression`` (batched, per class,
``max_output_boxes_per_class = max_det``) selects ``(N, 3)`` ``[batch, class, box]``; the rows are then ordered by
(batch, decreasing score), ranked within their image and scattered into the padded output.

The post-processing is traced from :class:`NMSPostprocess` (a small torch module whose ``NonMaxSuppression`` step
is a custom op with an eager implementation, so it also runs in PyTorch) and joined with ``onnx.compose``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["NMSPostprocess", "nms_graph", "append_nms", "NMS_INPUT"]

NMS_INPUT = "raw_output0"  # the detector's output, renamed, once the NMS graph consumes it


def _eager_nms(boxes: torch.Tensor, scores: torch.Tensor, max_per_class: int, iou: float,
               conf: float) -> torch.Tensor:
    """``boxes (B, A, 4)`` xyxy, ``scores (B, C, A)`` -> ``(N, 3)`` int64 ``[batch, class, box]`` (what ONNX
    ``NonMaxSuppression`` returns: per image and class, scores ``> conf``, greedy IoU ``> iou``, at most
    ``max_per_class``)."""
    from yolokit.ops.nms import nms

    rows = []
    for b in range(boxes.shape[0]):
        for c in range(scores.shape[1]):
            index = (scores[b, c] > conf).nonzero().squeeze(1)
            keep = index[nms(boxes[b, index], scores[b, c, index], iou)][:max_per_class]
            rows.append(torch.stack([torch.full_like(keep, b), torch.full_like(keep, c), keep], 1))
    return torch.cat(rows) if rows else torch.zeros((0, 3), dtype=torch.int64)


def _nms_op(max_per_class: int, iou: float, conf: float) -> type[torch.autograd.Function]:
    """ONNX ``NonMaxSuppression`` (``center_point_box=0``) with these settings baked in, plus its eager twin.

    (The settings are constants of the op: passing them as traced arguments breaks the TorchScript exporter.)
    """

    class NonMaxSuppression(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, boxes: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            if torch.jit.is_tracing():  # the export records the symbolic op; eager ops here would be traced too
                return torch.zeros((1, 3), dtype=torch.int64)
            return _eager_nms(boxes, scores, max_per_class, iou, conf)

        @staticmethod
        def symbolic(g: Any, boxes: Any, scores: Any) -> Any:
            count = g.op("Constant", value_t=torch.tensor([max_per_class], dtype=torch.int64))
            iou_t = g.op("Constant", value_t=torch.tensor([iou], dtype=torch.float32))
            conf_t = g.op("Constant", value_t=torch.tensor([conf], dtype=torch.float32))
            return g.op("NonMaxSuppression", boxes, scores, count, iou_t, conf_t, center_point_box_i=0)

    return NonMaxSuppression


class NMSPostprocess(nn.Module):
    """``(B, 4+nc, A)`` head output -> ``(B, max_det, 6)`` final detections (see the module docstring)."""

    def __init__(self, conf: float = 0.25, iou: float = 0.7, max_det: int = 300, agnostic: bool = False) -> None:
        super().__init__()
        self.conf, self.iou, self.max_det, self.agnostic = float(conf), float(iou), int(max_det), bool(agnostic)

    def forward(self, preds: torch.Tensor) -> torch.Tensor:
        xy, wh = preds[:, 0:2].transpose(1, 2), preds[:, 2:4].transpose(1, 2)  # (B, A, 2) each
        boxes = torch.cat([xy - wh / 2, xy + wh / 2], 2)  # (B, A, 4) xyxy
        scores = preds[:, 4:]  # (B, nc, A)
        best, labels = scores.max(1)  # (B, A)
        if self.agnostic:
            nms_scores = best.unsqueeze(1)  # (B, 1, A)
        else:
            classes = torch.arange(scores.shape[1], device=preds.device).view(1, -1, 1)  # (1, nc, 1)
            nms_scores = torch.where(labels.unsqueeze(1) == classes, scores, torch.zeros_like(scores))  # (B, nc, A)
        selected = _nms_op(self.max_det, self.iou, self.conf).apply(boxes, nms_scores)  # (N, 3)
        batch, index = selected[:, 0], selected[:, 2]
        score, label = best[batch, index], labels[batch, index]  # (N,)
        rows = torch.cat([boxes[batch, index], score.unsqueeze(1), label.unsqueeze(1).to(preds.dtype)], 1)  # (N, 6)
        order = torch.argsort(batch.to(preds.dtype) * 2 + (1 - score))  # by image, then decreasing score
        batch, rows = batch[order], rows[order]
        images = torch.arange(preds.shape[0], device=preds.device).unsqueeze(1)  # (B, 1)
        counts = (batch.unsqueeze(0) == images).sum(1)  # (B,) rows per image
        rank = torch.ones_like(batch).cumsum(0) - 1 - (counts.cumsum(0) - counts)[batch]  # (N,) place in its image
        keep = (rank < self.max_det).nonzero().squeeze(1)
        out = torch.zeros(preds.shape[0], self.max_det, 6, dtype=preds.dtype, device=preds.device)
        return out.index_put((batch[keep], rank[keep]), rows[keep])


def nms_graph(num_classes: int, *, conf: float, iou: float, max_det: int, agnostic: bool, opset: int) -> Any:
    """The post-processing alone as an ``onnx.ModelProto``: input ``preds`` ``(B, 4+nc, A)``, output ``output0``."""
    import io
    import warnings

    import onnx

    module = NMSPostprocess(conf, iou, max_det, agnostic).eval()
    dummy = torch.rand(1, 4 + num_classes, 64) * torch.tensor([64.0, 64, 16, 16, *([1.0] * num_classes)]).view(1, -1, 1)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (dummy,), buffer, input_names=["preds"], output_names=["output0"],
                          opset_version=int(opset), dynamo=False,
                          dynamic_axes={"preds": {0: "batch", 2: "anchors"}, "output0": {0: "batch"}})
    return onnx.load_from_string(buffer.getvalue())


def _opset(proto: Any) -> int:
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def append_nms(proto: Any, *, conf: float, iou: float, max_det: int, agnostic: bool) -> Any:
    """``proto`` (yolokit graph, ``output0`` = ``(B, 4+nc, A)``) with the NMS graph appended (module docstring)."""
    import onnx
    from onnx import compose

    from yolokit.errors import ExportError

    dims = proto.graph.output[0].type.tensor_type.shape.dim
    if len(dims) != 3 or not dims[1].HasField("dim_value") or dims[1].dim_value < 5:
        raise ExportError("embedded NMS needs a graph whose output is (B, 4+nc, A) (the one-to-many head): export "
                          "with nms=True (not the NMS-free head)")
    for node in proto.graph.node:  # the detector's output becomes an intermediate tensor
        node.output[:] = [NMS_INPUT if name == "output0" else name for name in node.output]
    proto.graph.output[0].name = NMS_INPUT
    post = compose.add_prefix(nms_graph(dims[1].dim_value - 4, conf=conf, iou=iou, max_det=max_det,
                                        agnostic=agnostic, opset=_opset(proto)), "nms/")
    post.ir_version = proto.ir_version
    merged = compose.merge_models(proto, post, io_map=[(NMS_INPUT, "nms/preds")])
    for node in merged.graph.node:
        node.output[:] = ["output0" if name == "nms/output0" else name for name in node.output]
    merged.graph.output[0].name = "output0"
    del merged.metadata_props[:]
    merged.metadata_props.extend(proto.metadata_props)
    onnx.checker.check_model(merged)
    return merged
