"""ClassificationModel: a backbone spec ending in a ``Classify`` head; one class distribution per image.

Build one with :func:`build_classifier` (the ``classify`` task's builder in :mod:`yolokit.tasks`), from a shipped
spec (``"yolo11n-cls.yaml"``), a YAML path or a spec dict embedded in a checkpoint. The layers are built by the
same table as detectors (:data:`yolokit.models.builder.LAYER_TYPES`), so the state_dict keys (``model.{i}.…``)
are the reference's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from yolokit.errors import ConfigError, SpecError
from yolokit.models.builder import build_layers
from yolokit.models.spec import canonical_module_name, load_spec, spec_rows
from yolokit.nn.classify import Classify
from yolokit.nn.conv import Conv

__all__ = ["ClassificationModel", "build_classifier", "CLS_BN_EPS", "CLS_BN_MOMENTUM"]

# The reference builds its classifiers with PyTorch's BatchNorm defaults (its detectors use 1e-3 / 0.03).
CLS_BN_EPS = 1e-5
CLS_BN_MOMENTUM = 0.1


class ClassificationModel(nn.Module):
    """An image classifier built from a spec (use :func:`build_classifier`).

    Args:
        layers: the layers (each with ``i``, ``f``, ``type``); the last is a :class:`~yolokit.nn.classify.Classify`.
        save: indices of layers whose outputs later layers read.
        spec: the resolved spec (``self.spec``; not in the state_dict).
        channels: input image channels.

    BatchNorm layers use PyTorch's defaults (eps ``1e-5``, momentum 0.1) as the reference's classifiers do, or
    ``spec["bn_eps"]`` when an imported checkpoint records another eps. Plain attributes (not in the state_dict):
    ``spec``, ``names`` (``{0: "0", ...}`` until set), ``nc``,
    ``stride`` (``tensor([1.])``, as the reference records for classifiers: any input size works, the head pools
    globally), ``end2end`` (False).
    """

    task = "classify"  # this model's entry in yolokit.tasks; weights metadata records it

    def __init__(self, layers: nn.Sequential, save: list[int], spec: dict[str, Any], channels: int = 3) -> None:
        super().__init__()
        if not isinstance(layers[-1], Classify):
            raise ValueError("ClassificationModel: the last layer must be a Classify head")
        self.model = layers
        self._saved = frozenset(save)
        self.spec = spec
        self.channels = channels
        self.nc: int = self.head.nc
        self.names: dict[int, str] = {i: str(i) for i in range(self.nc)}
        self.end2end = False
        self.stride = torch.tensor([1.0])
        eps = float(spec.get("bn_eps", CLS_BN_EPS))  # an imported checkpoint may record another eps
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eps, module.momentum = eps, CLS_BN_MOMENTUM

    @property
    def head(self) -> Classify:
        """The Classify layer (the last layer)."""
        return self.model[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, C, H, W)`` (RGB in [0, 1], any H, W >= 32) -> train: ``(B, nc)`` logits; eval: ``(B, nc)``
        softmax probabilities."""
        return self._run(x, stop_at_head=False)

    def head_inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature map(s) fed to the head, ``[(B, C, H/32, W/32)]``."""
        feats = self._run(x, stop_at_head=True)
        return feats if isinstance(feats, list) else [feats]

    def _run(self, x: torch.Tensor, stop_at_head: bool) -> Any:
        outputs: list[torch.Tensor | None] = []
        last = len(self.model) - 1
        for layer in self.model:
            if layer.f != -1:
                x = outputs[layer.f] if isinstance(layer.f, int) else [x if j == -1 else outputs[j] for j in layer.f]
            if stop_at_head and layer.i == last:
                return x
            x = layer(x)
            outputs.append(x if layer.i in self._saved else None)
        return x

    def set_dropout(self, p: float) -> None:
        """Dropout probability before the head's linear layer (a training setting; 0.0 = off)."""
        if not 0.0 <= float(p) < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {p!r}: pass e.g. dropout=0.2")
        self.head.drop.p = float(p)

    def set_nms_free(self, flag: bool) -> None:
        """Classifiers have no NMS: ``flag`` must be False (the setting belongs to detectors)."""
        if flag:
            raise ConfigError("nms=False (NMS-free head) is a detection setting; a classifier has no NMS: drop it")

    def fuse(self) -> ClassificationModel:
        """Fold every BatchNorm into its conv (in place; idempotent; outputs equal within float rounding)."""
        for module in self.modules():
            if isinstance(module, Conv):
                module.fuse()
        return self

    def is_fused(self) -> bool:
        """True when no BatchNorm layer is left."""
        return not any(isinstance(m, nn.BatchNorm2d) for m in self.modules())

    def info(
        self, verbose: bool = True, detailed: bool = False, imgsz: int | tuple[int, int] = 640
    ) -> tuple[int, int, int, float]:
        """Log and return ``(layers, parameters, gradients, gflops)``; see :func:`yolokit.models.info.model_info`."""
        from yolokit.models.info import model_info

        return model_info(self, verbose=verbose, detailed=detailed, imgsz=imgsz)


def build_classifier(
    spec: Mapping[str, Any] | str | Path, num_classes: int | None = None, channels: int = 3
) -> ClassificationModel:
    """Build a randomly initialised :class:`ClassificationModel` from a spec whose last layer is ``Classify``.

    Args:
        spec: a spec dict, a shipped name (``"yolo11n-cls.yaml"``) or a YAML path (see ``load_spec``).
        num_classes: overrides the spec's ``nc`` (the model's spec records the value used).
        channels: input image channels.

    Raises:
        SpecError: invalid spec, a layer that cannot be built, or a last layer other than ``Classify``.
    """
    spec = load_spec(spec)
    if num_classes is not None:
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise SpecError(f"num_classes: expected a positive int, found {num_classes!r}")
        spec["nc"] = num_classes
    rows = spec_rows(spec)
    if canonical_module_name(rows[-1][2]) != "Classify":
        raise SpecError(f"layer {len(rows) - 1}: expected the last layer of a classifier to be Classify, found "
                        f"{rows[-1][2]!r}; for a detector use build_model")
    layers, save = build_layers(spec, channels)
    return ClassificationModel(layers, save, spec, channels=channels)
