"""YOLOv5 building blocks and its anchor-based detection head, written from the architecture's published facts.

The blocks rebuild legacy YOLOv5 checkpoints (releases v1.0-v7.0) with yolokit's own modules; their attribute names
(``conv``, ``bn``, ``cv1``..``cv4``, ``m``, ``anchors``) give the same state_dict keys as the original models, so a
checkpoint's tensors load by name. The activation is a parameter (``act``: a module factory), since the releases
differ: LeakyReLU(0.1) (v1.0-v2.0), Hardswish (v3.0-v3.1), SiLU (v4.0+). All feature maps are ``(B, C, H, W)``.

- ``Bottleneck5``: ``cv2(cv1(x))`` with a 1x1 then a 3x3 Conv, plus ``x`` when ``shortcut and c1 == c2``.
- ``C3``: ``cv3(cat(m(cv1 x), cv2 x))``, n Bottleneck5 (``e=1``) in ``m``.
- ``BottleneckCSP``: ``cv4(act(bn(cat(cv3(m(cv1 x)), cv2 x))))`` with plain 1x1 convs ``cv2``/``cv3``.
- ``SPP``: ``cv2(cat(x', pool_5 x', pool_9 x', pool_13 x'))`` with ``x' = cv1 x``; ``SPPF5``: the same with one
  5x5 pool applied 1, 2, 3 times in sequence (equal outputs to SPP(5, 9, 13)).
- ``Focus``: space-to-depth, ``cat(x[::2, ::2], x[1::2, ::2], x[::2, 1::2], x[1::2, 1::2])`` on (H, W), then a Conv.
- ``AnchorDetect``: per level a 1x1 conv to ``na * (5 + nc)`` outputs; see its docstring for the decode.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import torch
from torch import nn

from yolokit.nn.conv import BN_EPS, BN_MOMENTUM, Conv

__all__ = ["ACTIVATIONS", "AnchorDetect", "Bottleneck5", "BottleneckCSP", "C3", "Focus", "SPP", "SPPF5",
           "make_activation"]

ActFactory = Callable[[], nn.Module]

#: Activation names a YOLOv5 spec may give (``spec["activation"]``); ``LeakyReLU(<slope>)`` also accepted.
ACTIVATIONS = ("SiLU", "Hardswish", "LeakyReLU(0.1)", "ReLU", "Identity")
_LEAKY_RE = re.compile(r"^LeakyReLU\((\d*\.?\d+(?:[eE]-?\d+)?)\)$")


def make_activation(name: str, shared: bool = False) -> ActFactory:
    """A factory of the activation module ``name`` (``"SiLU"``, ``"Hardswish"``, ``"LeakyReLU(0.1)"``, ...).

    ``shared``: every call returns the same instance (the original shares one SiLU between all Convs from v6.2 on,
    which its module count reflects); otherwise a new module per call. Raises ``ValueError`` for an unknown name.
    """
    simple = {"SiLU": nn.SiLU, "Hardswish": nn.Hardswish, "ReLU": nn.ReLU, "Identity": nn.Identity}
    match = _LEAKY_RE.match(str(name))
    if match:
        slope = float(match.group(1))
        factory: ActFactory = lambda: nn.LeakyReLU(slope)  # noqa: E731
    elif name in simple:
        factory = simple[name]
    else:
        raise ValueError(f"unknown activation {name!r}: expected one of {', '.join(ACTIVATIONS)}")
    if shared:
        instance = factory()
        return lambda: instance
    return factory


def _conv(c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1, *,
          act: ActFactory) -> Conv:
    return Conv(c1, c2, k, s, p, g, act=act())


class Bottleneck5(nn.Module):
    """YOLOv5 bottleneck: 1x1 Conv to ``int(c2 * e)``, 3x3 Conv to ``c2``; residual if ``shortcut and c1 == c2``."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5, *,
                 act: ActFactory = nn.SiLU) -> None:
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = _conv(c1, hidden, 1, 1, act=act)
        self.cv2 = _conv(hidden, c2, 3, 1, g=g, act=act)
        self.add = bool(shortcut) and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP bottleneck with 3 convs: ``cv3(cat(m(cv1(x)), cv2(x)))``; hidden ``int(c2 * e)``, ``n`` bottlenecks."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5, *,
                 act: ActFactory = nn.SiLU) -> None:
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = _conv(c1, hidden, 1, 1, act=act)
        self.cv2 = _conv(c1, hidden, 1, 1, act=act)
        self.cv3 = _conv(2 * hidden, c2, 1, act=act)
        self.m = nn.Sequential(*(Bottleneck5(hidden, hidden, shortcut, g, e=1.0, act=act) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class BottleneckCSP(nn.Module):
    """CSP bottleneck of v1.0-v3.1: ``cv4(act(bn(cat(cv3(m(cv1 x)), cv2 x))))``.

    ``cv2``/``cv3`` are bias-free 1x1 ``nn.Conv2d``; ``bn`` (over ``2 * hidden`` channels) and ``csp_act`` act on
    the concatenation; the Convs use ``act``.
    """

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5, *,
                 act: ActFactory = nn.SiLU, csp_act: ActFactory | None = None) -> None:
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = _conv(c1, hidden, 1, 1, act=act)
        self.cv2 = nn.Conv2d(c1, hidden, 1, 1, bias=False)
        self.cv3 = nn.Conv2d(hidden, hidden, 1, 1, bias=False)
        self.cv4 = _conv(2 * hidden, c2, 1, 1, act=act)
        self.bn = nn.BatchNorm2d(2 * hidden, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = (csp_act or act)()
        self.m = nn.Sequential(*(Bottleneck5(hidden, hidden, shortcut, g, e=1.0, act=act) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y1 = self.cv3(self.m(self.cv1(x)))
        y2 = self.cv2(x)
        return self.cv4(self.act(self.bn(torch.cat((y1, y2), 1))))


class SPP(nn.Module):
    """Spatial pyramid pooling: ``cv2(cat([y] + [pool_k(y) for k in ks]))``, ``y = cv1(x)`` (hidden ``c1 // 2``)."""

    def __init__(self, c1: int, c2: int, k: Sequence[int] = (5, 9, 13), *, act: ActFactory = nn.SiLU) -> None:
        super().__init__()
        hidden = c1 // 2
        self.cv1 = _conv(c1, hidden, 1, 1, act=act)
        self.cv2 = _conv(hidden * (len(k) + 1), c2, 1, 1, act=act)
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=size, stride=1, padding=size // 2) for size in k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv1(x)
        return self.cv2(torch.cat([y] + [pool(y) for pool in self.m], 1))


class SPPF5(nn.Module):
    """Fast SPP (v6.0+): ``cv2(cat[y, p(y), p(p(y)), p(p(p(y)))])``, ``y = cv1(x)``, ``p`` a k x k max pool."""

    def __init__(self, c1: int, c2: int, k: int = 5, *, act: ActFactory = nn.SiLU) -> None:
        super().__init__()
        hidden = c1 // 2
        self.cv1 = _conv(c1, hidden, 1, 1, act=act)
        self.cv2 = _conv(hidden * 4, c2, 1, 1, act=act)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(self.m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class Focus(nn.Module):
    """Space-to-depth stem of v1.0-v5.0: ``(B, C, H, W) -> (B, 4C, H/2, W/2)`` then ``conv`` (a Conv)."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1, *,
                 act: ActFactory = nn.SiLU) -> None:
        super().__init__()
        self.conv = _conv(c1 * 4, c2, k, s, p, g, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = (x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2])
        return self.conv(torch.cat(patches, 1))


class AnchorDetect(nn.Module):
    """YOLOv5's anchor-based head over ``nl`` levels with ``na`` anchors each and ``no = 5 + nc`` outputs per anchor.

    Args:
        nc: class count.
        anchors: per level a flat list ``[w0, h0, w1, h1, ...]`` of anchor sizes in **input pixels**; stored (after
            the model sets ``stride``) in the buffer ``anchors`` ``(nl, na, 2)`` in grid units (pixels / stride),
            the original's state_dict entry.
        ch: input channels of each level.

    Decode of one level's raw map ``p (B, na, H, W, no)``: ``s = sigmoid(p)``, ``xy = (2 s_xy - 0.5 + grid) * stride``,
    ``wh = (2 s_wh)^2 * anchors * stride``, ``obj = s_4``, class probabilities ``s_5..``; the score of a class is
    ``obj * p_cls``. Anchors are ordered level, anchor, row, column (the original's output order).

    Attributes (plain): ``stride`` (nl,) set by the model, ``nms_free`` (always False: there is no NMS-free branch),
    ``max_det``, ``end2end`` (False).
    """

    def __init__(self, nc: int, anchors: Sequence[Sequence[float]], ch: Sequence[int]) -> None:
        super().__init__()
        if not ch or len(anchors) != len(ch):
            raise ValueError(f"AnchorDetect needs one anchor list per input level, got {len(anchors)} lists for "
                             f"{len(ch)} levels")
        sizes = [len(a) for a in anchors]
        if sizes[0] < 2 or sizes[0] % 2 or len(set(sizes)) != 1:
            raise ValueError(f"AnchorDetect anchors: expected [w, h, w, h, ...] pairs, the same count per level; "
                             f"got lists of {sizes} values")
        self.nc, self.nl, self.na, self.no = nc, len(ch), sizes[0] // 2, nc + 5
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(self.nl, self.na, 2))
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)
        self.stride = torch.zeros(self.nl)
        self.nms_free, self.end2end, self.max_det = False, False, 300

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        """Train: raw maps ``[(B, na, H_i, W_i, no), ...]`` (the loss input). Eval: ``(B, 4+nc, A)`` xywh boxes in
        input pixels + scores ``obj * cls`` (the input of ``ops.nms.non_max_suppression``)."""
        raw = self.forward_raw(feats)
        return raw if self.training else self.decode(raw)

    def forward_raw(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per level ``(B, na, H, W, no)``: the 1x1 conv's output with anchors and outputs split."""
        out = []
        for conv, f in zip(self.m, feats, strict=True):
            b, _, h, w = f.shape
            out.append(conv(f).view(b, self.na, self.no, h, w).permute(0, 1, 3, 4, 2).contiguous())
        return out

    def decode_v5(self, raw: list[torch.Tensor]) -> torch.Tensor:
        """The original's inference output ``(B, A, 5 + nc)``: ``[x, y, w, h]`` pixels, objectness, class probs."""
        rows = []
        for i, p in enumerate(raw):
            b, _, h, w, _ = p.shape
            grid, anchor_px = self._grid(i, h, w, p)
            y = p.sigmoid()
            xy = (y[..., :2] * 2 + grid) * self.stride[i].to(p.dtype)  # (B, na, H, W, 2)
            wh = (y[..., 2:4] * 2) ** 2 * anchor_px  # (B, na, H, W, 2)
            rows.append(torch.cat((xy, wh, y[..., 4:]), -1).view(b, -1, self.no))
        return torch.cat(rows, 1)

    def decode(self, raw: list[torch.Tensor]) -> torch.Tensor:
        """``(B, 4+nc, A)``: xywh in input pixels and class scores ``obj * p_cls`` (see the class docstring)."""
        y = self.decode_v5(raw)  # (B, A, 5 + nc)
        scores = y[..., 5:] * y[..., 4:5]  # (B, A, nc)
        return torch.cat((y[..., :4], scores), -1).transpose(1, 2)

    def _grid(self, i: int, h: int, w: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cell offsets minus 0.5 ``(1, 1, H, W, 2)`` (x, y) and anchor sizes in pixels ``(1, na, 1, 1, 2)``."""
        ys = torch.arange(h, device=like.device, dtype=like.dtype)
        xs = torch.arange(w, device=like.device, dtype=like.dtype)
        yv, xv = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack((xv, yv), 2).view(1, 1, h, w, 2) - 0.5
        anchor_px = (self.anchors[i] * self.stride[i].to(self.anchors.device)).view(1, self.na, 1, 1, 2)
        return grid, anchor_px.to(like.dtype)

    @torch.no_grad()
    def bias_init(self) -> None:
        """Objectness bias ``+= log(8 / (640 / stride)^2)`` (~8 objects per 640 image); class bias
        ``+= log(0.6 / (nc - 0.99))`` (the original's priors)."""
        for conv, stride in zip(self.m, self.stride.tolist(), strict=True):
            bias = conv.bias.view(self.na, -1)  # (na, no)
            bias[:, 4] += math.log(8 / (640 / stride) ** 2)
            bias[:, 5:] += math.log(0.6 / (self.nc - 0.99))
