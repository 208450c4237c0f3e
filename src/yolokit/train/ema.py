"""Exponential moving average of a model's weights (what validation and the saved weights use)."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

__all__ = ["ModelEMA"]


class ModelEMA:
    """A copy of ``model`` whose floating tensors follow the model's: ``e <- d e + (1 - d) m`` after each step.

    ``d = decay * (1 - exp(-updates / tau))`` ramps from 0 (the first update copies the model) to ``decay``, so the
    average is not dragged by the random initial weights. Every floating tensor of the state_dict is averaged
    (parameters and BatchNorm running statistics); integer buffers (``num_batches_tracked``) are copied.

    Args:
        model: the model being trained (not changed).
        decay: the asymptotic decay (0.9999).
        tau: ramp length in updates (2000).
        updates: updates already made (resume).
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0) -> None:
        self.module = copy.deepcopy(model).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, updates

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One averaging step towards ``model``'s current tensors."""
        self.updates += 1
        d = self.current_decay()
        source = model.state_dict()
        for name, tensor in self.module.state_dict().items():
            value = source[name].detach()
            if tensor.dtype.is_floating_point:
                tensor.mul_(d).add_(value.to(tensor.dtype), alpha=1 - d)
            else:
                tensor.copy_(value)

    def state_dict(self) -> dict[str, Any]:
        """``{"updates": int, "decay", "tau", "module": state_dict}`` (plain tensors: ``weights_only`` loadable)."""
        return {"updates": self.updates, "decay": self.decay, "tau": self.tau, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates, self.decay, self.tau = int(state["updates"]), float(state["decay"]), float(state["tau"])
