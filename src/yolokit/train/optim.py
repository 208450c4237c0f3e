"""Optimizers and parameter groups: ``SGD`` (Nesterov), ``Adam``, ``AdamW``, ``MuSGD`` and the ``auto`` rule.

Parameter groups (every optimizer), trainable parameters only:

- ``weight``: conv / linear weights, with weight decay;
- ``bn``: normalisation-layer weights, no weight decay;
- ``bias``: every bias, no weight decay (its warmup starts from ``warmup_bias_lr``);
- ``muon`` (MuSGD only): every 2-D / 4-D parameter, with weight decay, updated by Muon + SGD.

The weight decay is ``weight_decay * batch * accumulate / nbs`` (the same decay per image at any batch size).
For MuSGD, every group is split again: the class head's parameters (``cv3`` and ``one2one_cv3`` of the Detect
layer) get ``3 * lr``. Each group carries ``kind`` (the names above) and ``initial_lr`` (its base lr, which the
schedule multiplies). Adam-family optimizers use ``betas=(momentum, 0.999)``.

``optimizer=auto`` (the reference's rule): ``iterations = ceil(images / max(batch, nbs)) * epochs``; more than 10,000
-> MuSGD (lr 0.01, momentum 0.9), else AdamW (lr ``round(0.002 * 5 / (4 + nc), 6)``, momentum 0.9), and a bias
warmup from 0. **A value the user gives is always honoured**: ``lr0``, ``momentum`` or ``warmup_bias_lr`` set by the
user (``TrainConfig.given``) are kept, where the reference replaces them silently.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from yolokit.errors import ConfigError
from yolokit.train.config import TrainConfig

__all__ = ["MuSGD", "OptimizerChoice", "build_optimizer", "choose_optimizer", "muon_direction", "newton_schulz",
           "param_groups", "scaled_weight_decay"]

logger = logging.getLogger(__name__)

AUTO_MUSGD_ITERATIONS = 10_000
HEAD_LR_SCALE = 3.0  # MuSGD: class-head parameters' lr multiplier
MUON_LR_SCALE, SGD_LR_SCALE = 0.2, 1.0  # MuSGD: the two updates of a Muon parameter, as fractions of lr
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # quintic Newton-Schulz iteration (Muon's published coefficients)
_NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm, nn.LayerNorm,
                nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)


def newton_schulz(matrix: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """Approximate the orthogonal factor ``U @ V.T`` of ``matrix = U S V.T`` (the "zeroth power" of Muon).

    ``matrix`` (m, n) is scaled to Frobenius norm 1 (so every singular value is <= 1), then ``steps`` quintic
    iterations ``X <- a X + (b A + c A A) X`` with ``A = X X^T`` push every singular value towards 1 (to about
    0.7-1.2 after 5 steps, not exactly 1: Muon does not need more). Computed in float32; returns ``matrix``'s shape
    and dtype.
    """
    if matrix.ndim != 2:
        raise ValueError(f"newton_schulz expects a 2-D matrix, got shape {tuple(matrix.shape)}")
    a, b, c = NS_COEFFICIENTS
    x = matrix.float()
    x = x / (x.norm() + eps)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T  # iterate on the smaller Gram matrix
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if tall else x).to(matrix.dtype)


def muon_direction(update: torch.Tensor) -> torch.Tensor:
    """Orthogonalised ``update`` (2-D, or 4-D conv weights flattened to ``(out, in*kh*kw)``), same shape.

    The result is scaled by ``sqrt(max(1, size(-2) / size(-1)))`` of the parameter's own last two dimensions (the
    reference's rule; 1 for square conv kernels).
    """
    flat = update.reshape(update.shape[0], -1)
    scale = max(1.0, update.shape[-2] / update.shape[-1]) ** 0.5
    return newton_schulz(flat).mul_(scale).reshape(update.shape)


class MuSGD(torch.optim.Optimizer):
    """Muon + SGD (YOLO26's optimizer). Groups with ``use_muon=True`` get, per step and parameter:

    1. Muon: ``m <- beta m + (1 - beta) g``; Nesterov direction ``u = beta m + (1 - beta) g``;
       ``p <- p - muon_scale * lr * muon_direction(u)``;
    2. SGD-Nesterov with weight decay: ``g' = g + wd p``, ``b <- beta b + g'``,
       ``p <- p - sgd_scale * lr (g' + beta b)``.

    Other groups get step 2 only, at ``lr``. ``beta`` is the group's ``momentum``.
    """

    def __init__(self, params: Iterable[Any], lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0,
                 nesterov: bool = True, muon_scale: float = MUON_LR_SCALE, sgd_scale: float = SGD_LR_SCALE) -> None:
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "nesterov": nesterov,
                    "use_muon": False}
        super().__init__(params, defaults)
        self.muon_scale, self.sgd_scale = muon_scale, sgd_scale

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, beta, nesterov = group["lr"], group["momentum"], group["nesterov"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                sgd_lr = lr
                if group["use_muon"]:
                    self._muon_step(p, state, lr, beta, nesterov)
                    sgd_lr = lr * self.sgd_scale
                self._sgd_step(p, state, sgd_lr, beta, nesterov, group["weight_decay"])
        return loss

    def _muon_step(self, p: torch.Tensor, state: dict, lr: float, beta: float, nesterov: bool) -> None:
        grad = p.grad
        buffer = state.setdefault("muon_buffer", torch.zeros_like(p))
        buffer.mul_(beta).add_(grad, alpha=1 - beta)
        direction = grad.mul(1 - beta).add_(buffer, alpha=beta) if nesterov else buffer
        p.add_(muon_direction(direction), alpha=-lr * self.muon_scale)

    @staticmethod
    def _sgd_step(p: torch.Tensor, state: dict, lr: float, beta: float, nesterov: bool, weight_decay: float) -> None:
        grad = p.grad.add(p, alpha=weight_decay) if weight_decay else p.grad
        buffer = state.setdefault("momentum_buffer", torch.zeros_like(p))
        buffer.mul_(beta).add_(grad)
        p.add_(grad.add(buffer, alpha=beta) if nesterov else buffer, alpha=-lr)


def scaled_weight_decay(weight_decay: float, batch: int, nbs: int) -> float:
    """``weight_decay * batch * accumulate / nbs`` with the nominal ``accumulate = max(round(nbs / batch), 1)``."""
    return weight_decay * batch * max(round(nbs / batch), 1) / nbs


def _classify(model: nn.Module, muon: bool) -> dict[str, list[tuple[str, nn.Parameter]]]:
    kinds: dict[str, list[tuple[str, nn.Parameter]]] = {"weight": [], "bn": [], "bias": [], "muon": []}
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue  # frozen: never handed to the optimizer, so never unfrozen by it
            name = f"{module_name}.{param_name}" if module_name else param_name
            if muon and param.ndim in (2, 4):
                kind = "muon"
            elif param_name == "bias":
                kind = "bias"
            elif isinstance(module, _NORM_LAYERS):
                kind = "bn"
            else:
                kind = "weight"
            kinds[kind].append((name, param))
    return kinds


def _class_head_ids(model: nn.Module) -> set[int]:
    head = getattr(model, "head", None)
    branches = [getattr(head, name, None) for name in ("cv3", "one2one_cv3")]
    return {id(p) for branch in branches if branch is not None for p in branch.parameters()}


def param_groups(model: nn.Module, lr: float, weight_decay: float, *, muon: bool = False) -> list[dict[str, Any]]:
    """The optimizer's parameter groups for ``model`` (see the module docstring); empty groups are left out."""
    kinds = _classify(model, muon)
    decay = {"weight": weight_decay, "bn": 0.0, "bias": 0.0, "muon": weight_decay}
    boosted = _class_head_ids(model) if muon else set()
    groups = []
    for kind, named in kinds.items():
        parts = [(lr, [p for _, p in named if id(p) not in boosted])]
        if muon:
            parts.insert(0, (lr * HEAD_LR_SCALE, [p for _, p in named if id(p) in boosted]))
        for group_lr, params in parts:
            if params:
                groups.append({"params": params, "lr": group_lr, "initial_lr": group_lr, "kind": kind,
                               "weight_decay": decay[kind], "use_muon": kind == "muon"})
    return groups


@dataclass(frozen=True)
class OptimizerChoice:
    """The optimizer a run uses and the values it starts from (after the ``auto`` rule)."""

    name: str
    lr: float
    momentum: float
    warmup_bias_lr: float


def choose_optimizer(config: TrainConfig, num_images: int, nc: int) -> OptimizerChoice:
    """Resolve ``config.optimizer`` (``auto``: the rule in the module docstring; user-given values kept)."""
    if config.optimizer != "auto":
        return OptimizerChoice(config.optimizer, config.lr0, config.momentum, config.warmup_bias_lr)
    iterations = math.ceil(num_images / max(config.batch, config.nbs)) * config.epochs
    if iterations > AUTO_MUSGD_ITERATIONS:
        name, lr, momentum = "MuSGD", 0.01, 0.9
    else:
        name, lr, momentum = "AdamW", round(0.002 * 5 / (4 + nc), 6), 0.9
    kept = [key for key in ("lr0", "momentum", "warmup_bias_lr") if key in config.given]
    choice = OptimizerChoice(name, config.lr0 if "lr0" in kept else lr,
                             config.momentum if "momentum" in kept else momentum,
                             config.warmup_bias_lr if "warmup_bias_lr" in kept else 0.0)
    note = f" (kept the {', '.join(kept)} you gave)" if kept else ""
    logger.info("optimizer=auto chose %s(lr=%g, momentum=%g) for %d iterations%s", choice.name, choice.lr,
                choice.momentum, iterations, note)
    return choice


def build_optimizer(model: nn.Module, choice: OptimizerChoice, weight_decay: float) -> torch.optim.Optimizer:
    """The optimizer of ``choice`` over :func:`param_groups` of ``model`` (``weight_decay`` already scaled)."""
    groups = param_groups(model, choice.lr, weight_decay, muon=choice.name == "MuSGD")
    if not groups:
        raise ConfigError("the model has no trainable parameters (everything is frozen): freeze fewer layers")
    if choice.name != "MuSGD":
        for group in groups:
            group.pop("use_muon")
    if choice.name == "SGD":
        optimizer = torch.optim.SGD(groups, lr=choice.lr, momentum=choice.momentum, nesterov=True)
    elif choice.name in ("Adam", "AdamW"):
        cls = torch.optim.Adam if choice.name == "Adam" else torch.optim.AdamW
        optimizer = cls(groups, lr=choice.lr, betas=(choice.momentum, 0.999))
    elif choice.name == "MuSGD":
        optimizer = MuSGD(groups, lr=choice.lr, momentum=choice.momentum, nesterov=True)
    else:
        raise ValueError(f"unknown optimizer {choice.name!r}")
    counts = {kind: sum(len(g["params"]) for g in groups if g["kind"] == kind) for kind in ("weight", "muon", "bn",
                                                                                             "bias")}
    logger.info("optimizer: %s(lr=%g, momentum=%g) with parameter groups %s", choice.name, choice.lr,
                choice.momentum, ", ".join(f"{n} {k}(decay={weight_decay if k in ('weight', 'muon') else 0.0:g})"
                                           for k, n in counts.items() if n))
    return optimizer
