"""Composite convolution blocks of the YOLOv8 / YOLO11 / YOLO26 backbones and necks.

Built from the primitives in ``yolokit.nn.conv`` (and ``PSABlock`` from ``yolokit.nn.attention`` for C3k2's
attention variant); nothing here is imported back by those modules. Attribute names (``conv``, ``bn``, ``cv1``,
``m``, ...) are the public address of the weights: they give the same state_dict keys as reference checkpoints.
All tensors are ``(B, C, H, W)``.
"""

from __future__ import annotations

import torch
from torch import nn

from yolokit.nn.attention import PSABlock

# The primitives live in yolokit.nn.conv; re-exported here so that ``from yolokit.nn.blocks import Conv`` keeps working.
from yolokit.nn.conv import BN_EPS, BN_MOMENTUM, Concat, Conv, DWConv, autopad, draw_like_reference, split_conv

__all__ = ["Bottleneck", "C2f", "C3k", "C3k2", "SPPF", "Conv", "DWConv", "Concat", "autopad", "split_conv", "BN_EPS",
           "BN_MOMENTUM"]


class Bottleneck(nn.Module):
    """``cv2(cv1(x))`` with hidden width ``int(c2 * e)``, plus ``x`` when ``shortcut and c1 == c2``."""

    def __init__(
        self, c1: int, c2: int, shortcut: bool = True, g: int = 1, k: tuple[int, int] = (3, 3), e: float = 0.5
    ) -> None:
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, k[0], 1)
        self.cv2 = Conv(hidden, c2, k[1], 1, g=g)
        self.add = bool(shortcut) and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """CSP block with n chained bottlenecks whose every output is concatenated.

    ``cv1`` (1x1, to ``2c``) is split in two halves; each element of ``m`` maps the last chunk to a new one;
    ``cv2`` (1x1) maps the ``(2 + n) * c`` concatenation to ``c2``. Hidden width ``c = int(c2 * e)``.
    """

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, self.c, shortcut, g, k=(3, 3), e=1.0) for _ in range(n))
        self.cv1_parts: nn.ModuleList | None = None  # set by split_cv1 (export copies only)

    def split_cv1(self) -> None:
        """Compute the two halves of ``cv1`` with two Convs instead of one Conv and a split (same values).

        For export copies: ONNX Runtime then keeps its blocked (NCHWc) layout through the block instead of
        reordering around a Slice (less inference time; figures: benchmarks/README.md). Not for training: the state_dict
        gains ``cv1_parts.*`` keys and the original ``cv1`` is no longer used.
        """
        self.cv1_parts = split_conv(self.cv1, [self.c, self.c])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cv1_parts is None:
            chunks = list(self.cv1(x).chunk(2, 1))  # 2 x (B, c, H, W)
        else:
            chunks = [part(x) for part in self.cv1_parts]
        for block in self.m:
            chunks.append(block(chunks[-1]))
        return self.cv2(torch.cat(chunks, 1))


class C3k(nn.Module):
    """CSP block (C3) with a configurable kernel: ``cv3(cat(m(cv1 x), cv2 x))``, hidden ``int(c2 * e)``."""

    def __init__(
        self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5, k: int = 3
    ) -> None:
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(c1, hidden, 1, 1)
        self.cv3 = Conv(2 * hidden, c2, 1)
        draw_like_reference(lambda: [Bottleneck(hidden, hidden, shortcut, g, k=(1, 3), e=1.0) for _ in range(n)])
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut, g, k=(k, k), e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class C3k2(C2f):
    """C2f whose inner blocks are Bottleneck(e=0.5), C3k(n=2) when ``c3k``, or Bottleneck + PSABlock when ``attn``.

    Note the argument order (the reference's): the 4th argument is ``c3k``, not ``shortcut``; shortcut is True.
    """

    def __init__(
        self, c1: int, c2: int, n: int = 1, c3k: bool = False, e: float = 0.5, attn: bool = False, g: int = 1,
        shortcut: bool = True,
    ) -> None:
        super().__init__(c1, c2, n, shortcut, g, e)
        self.m = nn.ModuleList(self._inner(self.c, c3k, attn, g, shortcut) for _ in range(n))

    @staticmethod
    def _inner(c: int, c3k: bool, attn: bool, g: int, shortcut: bool) -> nn.Module:
        if attn:
            return nn.Sequential(Bottleneck(c, c, shortcut, g), PSABlock(c, attn_ratio=0.5, num_heads=max(c // 64, 1)))
        if c3k:
            return C3k(c, c, 2, shortcut, g)
        return Bottleneck(c, c, shortcut, g)


class SPPF(nn.Module):
    """Spatial pyramid pooling (fast): ``cv2(cat[y, pool(y), pool^2(y), ...])`` with ``y = cv1(x)``.

    Args:
        c1, c2: input / output channels (hidden ``c1 // 2``).
        k: max-pool kernel (stride 1, same padding), applied ``n`` times in sequence.
        shortcut: add the input when ``c1 == c2`` (YOLO26).
        cv1_act: SiLU after cv1 (YOLOv8/11 rows with <= 3 args); the YOLO26 row keeps cv1 linear.
    """

    def __init__(
        self, c1: int, c2: int, k: int = 5, n: int = 3, shortcut: bool = False, cv1_act: bool = False
    ) -> None:
        super().__init__()
        hidden = c1 // 2
        self.cv1 = Conv(c1, hidden, 1, 1, act=cv1_act)
        self.cv2 = Conv(hidden * (n + 1), c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)
        self.n = n
        self.add = bool(shortcut) and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = [self.cv1(x)]
        for _ in range(self.n):
            pooled.append(self.m(pooled[-1]))
        y = self.cv2(torch.cat(pooled, 1))
        return y + x if self.add else y
