"""Anchor points for anchor-free heads and distance-to-box decoding.

Anchor points are grid-cell centres in feature-map units (``x + offset``, ``y + offset``); multiply by the level
stride to get input pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["make_anchors", "dist2bbox"]


def make_anchors(
    feats: Sequence[torch.Tensor], strides: Sequence[float] | torch.Tensor, offset: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid-cell centres of every level, concatenated level after level.

    Args:
        feats: per-level feature maps ``(B, C, H_i, W_i)`` (only shape, dtype and device are used).
        strides: one stride per level, e.g. ``[8, 16, 32]``.
        offset: position inside the cell (0.5 = centre).

    Returns:
        ``anchor_points (A, 2)`` as ``(x, y)`` in feature units of their own level, and ``stride_tensor (A, 1)``,
        where ``A = sum(H_i * W_i)``; points are ordered row-major (y outer, x inner) within each level.
    """
    if len(feats) != len(strides):
        raise ValueError(
            f"make_anchors: expected one stride per level, got {len(feats)} levels and {len(strides)} strides"
        )
    points, stride_list = [], []
    for feat, stride in zip(feats, strides, strict=True):
        h, w = feat.shape[-2:]
        dtype, device = feat.dtype, feat.device
        xs = torch.arange(w, dtype=dtype, device=device) + offset
        ys = torch.arange(h, dtype=dtype, device=device) + offset
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) each
        points.append(torch.stack((grid_x, grid_y), dim=-1).view(-1, 2))  # (H*W, 2)
        stride_list.append(torch.full((h * w, 1), float(stride), dtype=dtype, device=device))
    return torch.cat(points), torch.cat(stride_list)


def dist2bbox(
    distance: torch.Tensor, anchor_points: torch.Tensor, xywh: bool = True, dim: int = 1
) -> torch.Tensor:
    """Turn (left, top, right, bottom) distances from anchor points into boxes.

    Args:
        distance: ``(..., 4, ...)`` ltrb distances, the 4 values along ``dim``.
        anchor_points: ``(..., 2, ...)`` ``(x, y)`` points along ``dim``, broadcastable to ``distance``.
        xywh: return ``(cx, cy, w, h)`` if True, else ``(x1, y1, x2, y2)``.
        dim: the coordinate dimension (e.g. 1 for ``(B, 4, A)``, -1 for ``(B, A, 4)``).

    Returns:
        Boxes with the 4 coordinates along ``dim``, in the same units as the inputs.
    """
    if distance.shape[dim] != 4:
        raise ValueError(f"dist2bbox: expected 4 distances along dim {dim}, got shape {tuple(distance.shape)}")
    lt, rb = distance.chunk(2, dim)
    x1y1 = anchor_points - lt
    x2y2 = anchor_points + rb
    if xywh:
        return torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), dim)
    return torch.cat((x1y1, x2y2), dim)
