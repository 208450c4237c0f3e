"""Classification head (YOLOv8-cls / YOLO11-cls / YOLO26-cls): ``Classify``.

``conv`` (a 1x1 ``Conv`` to 1280 channels) -> global average pool -> dropout -> ``linear`` to ``nc`` logits.
Attribute names (``conv``, ``pool``, ``drop``, ``linear``) give the reference's state_dict keys
(``model.{i}.conv.conv.weight``, ``model.{i}.linear.weight``...).
"""

from __future__ import annotations

import torch
from torch import nn

from yolokit.nn.conv import Conv

__all__ = ["Classify", "CLASSIFY_HIDDEN"]

#: Channels of the 1x1 conv before the pool (fixed at every scale, as in the reference).
CLASSIFY_HIDDEN = 1280


class Classify(nn.Module):
    """Image-level class scores from a feature map.

    Args:
        c1: input channels (a list of feature maps is concatenated along channels first).
        c2: number of classes.
        k, s, p, g: kernel, stride, padding and groups of the 1x1 conv.
        dropout: dropout probability before the linear layer (0.0 = off; a training setting).

    Forward: ``(B, c1, H, W)`` -> train: ``(B, c2)`` logits; eval: ``(B, c2)`` softmax probabilities (rows sum to 1).
    """

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.nc = c2
        self.conv = Conv(c1, CLASSIFY_HIDDEN, k, s, p, g)
        self.pool = nn.AdaptiveAvgPool2d(1)  # (B, 1280, H, W) -> (B, 1280, 1, 1)
        self.drop = nn.Dropout(p=dropout, inplace=True)
        self.linear = nn.Linear(CLASSIFY_HIDDEN, c2)

    def logits(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """``(B, c1, H, W)`` -> ``(B, nc)`` logits, whatever the mode."""
        if isinstance(x, list):
            x = torch.cat(x, 1)
        return self.linear(self.drop(self.pool(self.conv(x)).flatten(1)))

    def forward(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        logits = self.logits(x)
        return logits if self.training else logits.softmax(1)
