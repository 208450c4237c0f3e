"""Primitive layers every other block is built from: ``Conv`` (Conv2d -> BatchNorm2d -> SiLU), ``DWConv``,
``Concat``, ``autopad`` and ``split_conv``.

This module imports nothing from ``yolokit.nn``: ``attention.py``, ``blocks.py`` and ``heads.py`` build on it
(primitives first, composites after). Attribute names (``conv``, ``bn``, ``act``) give the reference's state_dict
keys. All tensors are ``(B, C, H, W)``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["Conv", "DWConv", "Concat", "autopad", "split_conv", "draw_like_reference", "BN_EPS", "BN_MOMENTUM"]

BN_EPS = 1e-3
BN_MOMENTUM = 0.03

# SiLU holds no state, so one instance serves every Conv (module listings and leaf-layer counts then match the
# reference, which shares its default activation the same way). Deep copies get their own instance.
_SHARED_SILU = nn.SiLU()


def draw_like_reference(build: Callable[[], object]) -> None:
    """Build and drop the modules that a reference constructor builds and then replaces (e.g. C3's default
    bottlenecks inside C3k), so that torch's random generator advances exactly as in the reference's constructors:
    the same seed then gives the same initial weights as the reference's, layer for layer."""
    build()


def autopad(kernel: int, padding: int | None = None, dilation: int = 1) -> int:
    """'Same' padding for an odd kernel: ``dilation * (kernel - 1) // 2`` unless ``padding`` is given."""
    if padding is not None:
        return padding
    return (dilation * (kernel - 1) + 1) // 2


class Conv(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> SiLU. After :meth:`fuse` the conv carries the BN and ``bn`` is None.

    Args:
        c1, c2: input / output channels.
        k, s, p, g, d: kernel, stride, padding (default 'same'), groups, dilation.
        act: True for SiLU, False for none, or a module to use.
    """

    def __init__(
        self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1, d: int = 1,
        act: bool | nn.Module = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p, d), groups=g, dilation=d, bias=False)
        self.bn: nn.BatchNorm2d | None = nn.BatchNorm2d(c2, eps=BN_EPS, momentum=BN_MOMENTUM)
        if act is True:
            self.act: nn.Module = _SHARED_SILU
        elif isinstance(act, nn.Module):
            self.act = act
        else:
            self.act = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold the BatchNorm into the conv: ``w' = w * g / sqrt(var + eps)``, ``b' = beta - g * mean / sqrt(var+eps)``.

        Idempotent; after it ``bn`` is None and the conv has a bias.
        """
        if self.bn is None:
            return
        conv, bn = self.conv, self.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C2,)
        fused = nn.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
            dilation=conv.dilation, groups=conv.groups, bias=True,
            device=conv.weight.device, dtype=conv.weight.dtype,
        )
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias.copy_(bn.bias + (bias - bn.running_mean) * scale)
        fused.requires_grad_(conv.weight.requires_grad)
        self.conv = fused
        self.bn = None


def split_conv(conv: Conv, sizes: list[int]) -> nn.ModuleList:
    """``conv`` (a 1x1, ``groups=1`` ``Conv``) as Convs over consecutive output-channel ranges of ``sizes``.

    ``torch.cat([part(x) for part in parts], 1)`` equals ``conv(x)`` exactly: each output channel is the same
    dot product. Used by ``C2f.split_cv1`` and ``C2PSA.split_cv1`` (no Split op in exported graphs).
    """
    if conv.conv.groups != 1 or sum(sizes) != conv.conv.out_channels:
        raise ValueError(f"split_conv needs groups=1 and sizes summing to {conv.conv.out_channels}, got {sizes}")
    parts, start = nn.ModuleList(), 0
    for size in sizes:
        part = copy.deepcopy(conv)
        keep = slice(start, start + size)
        part.conv.out_channels = size
        part.conv.weight = nn.Parameter(conv.conv.weight.detach()[keep].clone(), conv.conv.weight.requires_grad)
        if conv.conv.bias is not None:
            part.conv.bias = nn.Parameter(conv.conv.bias.detach()[keep].clone(), conv.conv.bias.requires_grad)
        if conv.bn is not None:
            part.bn.num_features = size
            for name in ("weight", "bias"):
                setattr(part.bn, name, nn.Parameter(getattr(conv.bn, name).detach()[keep].clone()))
            for name in ("running_mean", "running_var"):
                setattr(part.bn, name, getattr(conv.bn, name)[keep].clone())
        parts.append(part)
        start += size
    return parts


class DWConv(Conv):
    """Depthwise-style Conv: groups = gcd(c1, c2) (weight ``(c2, 1, k, k)`` when c1 == c2)."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, d: int = 1, act: bool | nn.Module = True) -> None:
        super().__init__(c1, c2, k, s, g=math.gcd(c1, c2), d=d, act=act)



class Concat(nn.Module):
    """Concatenate a list of tensors along ``dimension`` (channels by default)."""

    def __init__(self, dimension: int = 1) -> None:
        super().__init__()
        self.d = dimension

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(x, self.d)
