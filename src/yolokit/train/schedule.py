"""Learning-rate schedule, warmup and gradient accumulation, as pure functions of (epoch, iteration).

Nothing here keeps state: the learning rate, momentum and accumulation of any iteration follow from the run's
settings, so a resumed run needs only its counters to continue exactly.

- Decay factor of epoch ``e`` (0-based) of ``E``: linear ``(1 - e/E) * (1 - lrf) + lrf``, or (``cos_lr``)
  one-cycle cosine ``(1 - cos(pi e / E)) / 2 * (lrf - 1) + 1``. A group's lr is ``initial_lr * factor(e)``.
- Warmup over the first ``round(min(warmup_epochs, E - 1) * nb)`` iterations (``nb`` batches per epoch; the
  reference 8.4 rule, which leaves the last epoch out of the warmup): at global iteration ``i <= warmup``, linear in
  ``i``, bias lrs fall from ``warmup_bias_lr`` and the other lrs rise from 0 to ``initial_lr * factor(e)``, momentum
  rises from ``warmup_momentum`` to the optimizer's momentum, and accumulation rises from 1 to the nominal one.
- Nominal accumulation ``max(round(nbs / batch), 1)`` (capped at the run's ``nb * E`` iterations): the optimizer
  steps when ``i - last_step >= accumulate(i)``, i.e. about every ``nbs`` images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Schedule", "lr_factor", "warmup_iterations", "nominal_accumulate"]


def lr_factor(epoch: int, epochs: int, lrf: float, cosine: bool = False) -> float:
    """The learning-rate multiplier of ``epoch`` (0-based) in a run of ``epochs``: 1 at epoch 0, towards ``lrf``."""
    if cosine:
        return ((1 - math.cos(epoch * math.pi / epochs)) / 2) * (lrf - 1) + 1
    return max(1 - epoch / epochs, 0.0) * (1.0 - lrf) + lrf


def warmup_iterations(warmup_epochs: float, epochs: int, batches_per_epoch: int) -> int:
    """Warmup length in iterations, leaving at least the final epoch without warmup (0 = no warmup)."""
    epochs_used = min(warmup_epochs, max(epochs - 1, 0))
    return round(epochs_used * batches_per_epoch) if epochs_used > 0 else 0


def nominal_accumulate(nbs: int, batch: int, total_iterations: int | None = None) -> int:
    """Batches whose gradients are summed before a step: ``max(round(nbs / batch), 1)``, capped by the run."""
    accumulate = max(round(nbs / batch), 1)
    return min(accumulate, total_iterations) if total_iterations else accumulate


@dataclass(frozen=True)
class Schedule:
    """The run's lr / momentum / accumulation at any iteration (see the module docstring)."""

    epochs: int
    batches_per_epoch: int
    lrf: float
    cosine: bool
    warmup: int  # iterations
    accumulate: int  # nominal
    warmup_bias_lr: float
    warmup_momentum: float
    momentum: float

    def factor(self, epoch: int) -> float:
        return lr_factor(epoch, self.epochs, self.lrf, self.cosine)

    def in_warmup(self, iteration: int) -> bool:
        return bool(self.warmup) and iteration <= self.warmup

    def accumulate_at(self, iteration: int) -> int:
        """Accumulation in force at global ``iteration``."""
        if not self.in_warmup(iteration):
            return self.accumulate
        return max(1, int(np.round(np.interp(iteration, [0, self.warmup], [1, self.accumulate]))))

    def apply(self, optimizer: Any, iteration: int, epoch: int) -> None:
        """Set every group's ``lr`` (and ``momentum``, when the optimizer has one) for ``iteration`` of ``epoch``."""
        factor = self.factor(epoch)
        warm = self.in_warmup(iteration)
        for group in optimizer.param_groups:
            target = group["initial_lr"] * factor
            if warm:
                start = self.warmup_bias_lr if group.get("kind") == "bias" else 0.0
                group["lr"] = float(np.interp(iteration, [0, self.warmup], [start, target]))
            else:
                group["lr"] = target
            if "momentum" in group:
                group["momentum"] = (float(np.interp(iteration, [0, self.warmup], [self.warmup_momentum,
                                                                                   self.momentum]))
                                     if warm else self.momentum)
