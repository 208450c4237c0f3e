"""Detection head (YOLOv8 / YOLO11 / YOLO26) and the distribution focal loss (DFL) integral.

Box branch ``cv2`` predicts ``4 * reg_max`` values per anchor (ltrb distances in stride units, as DFL bins when
``reg_max > 1``); class branch ``cv3`` predicts ``nc`` logits. YOLO26 (``end2end``) has a second, one-to-one
branch ``one2one_cv2``/``one2one_cv3`` trained for NMS-free inference.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import nn

from yolokit.nn.conv import Conv, DWConv
from yolokit.ops.anchors import dist2bbox, make_anchors

__all__ = ["DFL", "Detect"]

RawOutputs = dict[str, object]


class DFL(nn.Module):
    """Expected value of a softmax over ``c1`` bins: ``(B, 4*c1, A) -> (B, 4, A)``; weight fixed to ``arange(c1)``."""

    def __init__(self, c1: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, 1, 1, bias=False).requires_grad_(False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.arange(c1, dtype=torch.float32).view(1, c1, 1, 1))
        self.c1 = c1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, a = x.shape
        # Bins last: a last-axis softmax and a (c1, 1) matmul. Same values as softmax over a middle axis followed by
        # the 1x1 conv (within float rounding), but much faster in ONNX Runtime, where a middle-axis Softmax runs
        # as a transpose + single-threaded kernel, and in eager torch (figures: benchmarks/README.md).
        probs = x.view(b, 4, self.c1, a).transpose(2, 3).softmax(-1)  # (B, 4, A, c1)
        return (probs @ self.conv.weight.view(self.c1, 1)).view(b, 4, a)


class Detect(nn.Module):
    """Anchor-free detection head over ``nl`` feature levels.

    Args:
        nc: number of classes.
        reg_max: DFL bins per box side (16 for v8/v11; 1 for YOLO26 = raw distances, no DFL).
        end2end: build the one-to-one branch (``one2one_cv2``, ``one2one_cv3``: copies of ``cv2``, ``cv3``).
        ch: input channels of each level.
        legacy: YOLOv8 class branch (two 3x3 Convs) instead of the depthwise one of YOLO11/26.

    Attributes (plain, not in the state_dict): ``stride`` (nl,) set by the builder, ``nms_free`` (eval output of
    the one-to-one branch), ``max_det`` (its top-k size).
    """

    def __init__(
        self, nc: int = 80, reg_max: int = 16, end2end: bool = False, ch: Sequence[int] = (), legacy: bool = False
    ) -> None:
        super().__init__()
        if not ch:
            raise ValueError("Detect needs the channel count of at least one input level")
        self.nc, self.nl, self.reg_max = nc, len(ch), reg_max
        self.no = nc + 4 * reg_max
        self.end2end, self.legacy = bool(end2end), bool(legacy)
        self.stride = torch.zeros(self.nl)
        self.nms_free = False
        self.max_det = 300
        c2 = max(16, ch[0] // 4, 4 * reg_max)
        c3 = max(ch[0], min(nc, 100))
        self.cv2 = nn.ModuleList(
            nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * reg_max, 1)) for x in ch
        )
        self.cv3 = nn.ModuleList(self._class_branch(x, c3, nc, legacy) for x in ch)
        self.dfl = DFL(reg_max) if reg_max > 1 else nn.Identity()
        if self.end2end:
            self.one2one_cv2 = copy.deepcopy(self.cv2)
            self.one2one_cv3 = copy.deepcopy(self.cv3)
        self._anchor_key: tuple | None = None
        self._anchors = torch.empty(0)
        self._strides = torch.empty(0)

    @staticmethod
    def _class_branch(c_in: int, c3: int, nc: int, legacy: bool) -> nn.Sequential:
        if legacy:
            return nn.Sequential(Conv(c_in, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, nc, 1))
        return nn.Sequential(
            nn.Sequential(DWConv(c_in, c_in, 3), Conv(c_in, c3, 1)),
            nn.Sequential(DWConv(c3, c3, 3), Conv(c3, c3, 1)),
            nn.Conv2d(c3, nc, 1),
        )

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor | RawOutputs:
        """Train: raw outputs (see :meth:`forward_raw`; YOLO26: ``{"one2many": ..., "one2one": ...}``).

        Eval: ``(B, 4+nc, A)`` xywh boxes in input pixels + class probabilities, or for YOLO26 with ``nms_free``
        ``(B, min(max_det, A), 6)`` ``[x1, y1, x2, y2, score, class]`` sorted by score.
        """
        if self.training:
            one2many = self.forward_raw(feats)
            if not self.end2end:
                return one2many
            return {"one2many": one2many, "one2one": self.forward_raw([f.detach() for f in feats], one2one=True)}
        if self.end2end and self.nms_free:
            decoded = self.decode(self.forward_raw(feats, one2one=True), xywh=False)  # (B, 4+nc, A)
            return self.select_topk(decoded.transpose(1, 2))
        return self.decode(self.forward_raw(feats), xywh=True)

    def forward_raw(self, feats: list[torch.Tensor], one2one: bool = False) -> dict[str, object]:
        """Undecoded outputs of one branch: ``{"boxes": (B, 4*reg_max, A), "scores": (B, nc, A) logits,
        "feats": feats}``, levels concatenated in order (A = sum of H_i*W_i)."""
        if one2one and not self.end2end:
            raise ValueError("this Detect head has no one-to-one branch (end2end=False)")
        box_head = self.one2one_cv2 if one2one else self.cv2
        cls_head = self.one2one_cv3 if one2one else self.cv3
        b = feats[0].shape[0]
        boxes = torch.cat([box_head[i](f).view(b, 4 * self.reg_max, -1) for i, f in enumerate(feats)], dim=-1)
        scores = torch.cat([cls_head[i](f).view(b, self.nc, -1) for i, f in enumerate(feats)], dim=-1)
        return {"boxes": boxes, "scores": scores, "feats": feats}

    def decode(self, raw: dict[str, object], xywh: bool = True) -> torch.Tensor:
        """Raw outputs -> ``(B, 4+nc, A)``: boxes in input pixels (xywh or xyxy) + sigmoid class scores."""
        anchors, strides = self.anchors(raw["feats"])  # (2, A), (1, A)
        distances = self.dfl(raw["boxes"])  # (B, 4, A) ltrb in stride units
        boxes = dist2bbox(distances, anchors.unsqueeze(0), xywh=xywh, dim=1) * strides
        return torch.cat((boxes, raw["scores"].sigmoid()), 1)

    def anchors(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Anchor points ``(2, A)`` (feature units) and strides ``(1, A)``, cached per input shape/dtype/device."""
        key = (
            tuple(tuple(f.shape[-2:]) for f in feats), tuple(self.stride.tolist()), feats[0].dtype, feats[0].device,
            torch.is_inference_mode_enabled(),  # inference tensors must not leak into autograd
        )
        tracing = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
        if tracing or key != self._anchor_key:
            points, strides = make_anchors(feats, self.stride.tolist(), 0.5)
            if tracing:
                return points.transpose(0, 1), strides.transpose(0, 1)
            self._anchors, self._strides = points.transpose(0, 1), strides.transpose(0, 1)
            self._anchor_key = key
        return self._anchors, self._strides

    def select_topk(self, preds: torch.Tensor) -> torch.Tensor:
        """NMS-free selection: ``(B, A, 4+nc)`` xyxy + scores -> ``(B, K, 6)``, ``K = min(max_det, A)``.

        Takes the K anchors with the highest max class score, then the K best (anchor, class) pairs among them
        (an anchor may appear with two classes), sorted by score descending. Rows: ``[x1, y1, x2, y2, score, cls]``.
        """
        b, a, _ = preds.shape
        if torch.onnx.is_in_onnx_export():  # K from the input's shape at run time (a graph for every input size)
            k = torch.clamp(torch._shape_as_tensor(preds)[1], max=self.max_det)
        else:
            k = min(self.max_det, a)
        boxes, scores = preds.split([4, self.nc], dim=-1)
        index = scores.amax(dim=-1).topk(k, dim=1).indices.unsqueeze(-1)  # (B, K, 1)
        boxes = boxes.gather(1, index.expand(-1, -1, 4))  # (B, K, 4)
        scores = scores.gather(1, index.expand(-1, -1, self.nc))  # (B, K, nc)
        top_scores, flat = scores.flatten(1).topk(k, dim=1)  # (B, K)
        anchor_idx = torch.div(flat, self.nc, rounding_mode="floor")
        boxes = boxes.gather(1, anchor_idx.unsqueeze(-1).expand(-1, -1, 4))
        classes = (flat % self.nc).to(preds.dtype)
        return torch.cat((boxes, top_scores.unsqueeze(-1), classes.unsqueeze(-1)), dim=-1)

    @torch.no_grad()
    def bias_init(self) -> None:
        """Box bias 2.0; class bias ``log(5 / nc / (640 / stride)^2)`` (a prior of ~5 objects per 640 image)."""
        branches = [(self.cv2, self.cv3)]
        if self.end2end:
            branches.append((self.one2one_cv2, self.one2one_cv3))
        for box_head, cls_head in branches:
            for box_seq, cls_seq, stride in zip(box_head, cls_head, self.stride.tolist(), strict=True):
                box_seq[-1].bias.fill_(2.0)
                cls_seq[-1].bias[: self.nc] = math.log(5 / self.nc / (640 / stride) ** 2)
