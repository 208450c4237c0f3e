"""Position-sensitive attention blocks (YOLO11 / YOLO26): Attention, PSABlock, C2PSA. Tensors are ``(B, C, H, W)``."""

from __future__ import annotations

import torch
from torch import nn

from yolokit.nn.conv import Conv, split_conv

__all__ = ["Attention", "PSABlock", "C2PSA"]


class Attention(nn.Module):
    """Multi-head self-attention over the ``H*W`` positions with a depthwise positional encoding.

    ``head_dim = dim // num_heads``, ``key_dim = int(head_dim * attn_ratio)``; ``qkv`` is a linear 1x1 Conv to
    ``dim + 2 * key_dim * num_heads`` channels, laid out per head as ``[q (key_dim), k (key_dim), v (head_dim)]``.
    Output: ``proj(v @ softmax(q^T k * key_dim^-0.5)^T + pe(v))``.
    """

    def __init__(self, dim: int, num_heads: int = 8, attn_ratio: float = 0.5) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.key_dim = int(self.head_dim * attn_ratio)
        self.scale = self.key_dim**-0.5
        self.qkv = Conv(dim, dim + 2 * self.key_dim * num_heads, 1, act=False)
        self.proj = Conv(dim, dim, 1, act=False)
        self.pe = Conv(dim, dim, 3, 1, g=dim, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = h * w
        qkv = self.qkv(x).view(b, self.num_heads, 2 * self.key_dim + self.head_dim, n)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.head_dim], dim=2)  # (B, heads, d, N) each
        attn = (q.transpose(-2, -1) @ k) * self.scale  # (B, heads, N, N)
        attn = attn.softmax(dim=-1)
        out = (v @ attn.transpose(-2, -1)).view(b, c, h, w) + self.pe(v.reshape(b, c, h, w))
        return self.proj(out)


class PSABlock(nn.Module):
    """``x + attn(x)`` then ``x + ffn(x)`` (residuals only when ``shortcut``); ffn is 1x1 ``c -> 2c -> c``."""

    def __init__(self, c: int, attn_ratio: float = 0.5, num_heads: int = 4, shortcut: bool = True) -> None:
        super().__init__()
        self.attn = Attention(c, num_heads=num_heads, attn_ratio=attn_ratio)
        self.ffn = nn.Sequential(Conv(c, 2 * c, 1), Conv(2 * c, c, 1, act=False))
        self.add = bool(shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x) if self.add else self.attn(x)
        return x + self.ffn(x) if self.add else self.ffn(x)


class C2PSA(nn.Module):
    """CSP wrapper around n PSABlocks: ``cv2(cat(a, m(b)))`` where ``(a, b) = split(cv1(x))``; needs c1 == c2."""

    def __init__(self, c1: int, c2: int, n: int = 1, e: float = 0.5) -> None:
        super().__init__()
        if c1 != c2:
            raise ValueError(f"C2PSA needs equal input and output channels, got {c1} -> {c2}")
        self.c = int(c1 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv(2 * self.c, c1, 1)
        self.m = nn.Sequential(*(PSABlock(self.c, attn_ratio=0.5, num_heads=max(self.c // 64, 1)) for _ in range(n)))
        self.cv1_parts: nn.ModuleList | None = None  # set by split_cv1 (export copies only)

    def split_cv1(self) -> None:
        """As ``C2f.split_cv1``: two Convs for the halves of ``cv1`` (export copies only)."""
        self.cv1_parts = split_conv(self.cv1, [self.c, self.c])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cv1_parts is None:
            a, b = self.cv1(x).split((self.c, self.c), dim=1)
        else:
            a, b = (part(x) for part in self.cv1_parts)
        return self.cv2(torch.cat((a, self.m(b)), 1))
