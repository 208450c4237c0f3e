"""DetectionModel: the layer sequence of a spec, run with the skip connections the spec's ``from`` fields name."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from yolokit.errors import ConfigError
from yolokit.nn.blocks import Conv
from yolokit.nn.heads import Detect

__all__ = ["DetectionModel"]


class DetectionModel(nn.Module):
    """A detector built from a spec (use :func:`yolokit.models.builder.build_model`).

    Args:
        layers: the layers; each carries ``i`` (index), ``f`` (from: -1, an index, or a list) and ``type``.
        save: indices of layers whose outputs later layers read.
        spec: the resolved spec (kept as ``self.spec``; not in the state_dict).
        channels: input image channels.
        stride_probe: side of the zero image used to measure the strides at build time.

    State_dict keys are ``model.{i}.…``, the same as reference checkpoints. Plain attributes: ``spec``, ``names``
    (``{0: "0", ...}`` until set), ``nc``, ``stride`` (e.g. ``tensor([8., 16., 32.])``), ``end2end``.
    """

    task = "detect"  # this model's entry in yolokit.tasks; weights metadata records it

    def __init__(
        self, layers: nn.Sequential, save: list[int], spec: dict[str, Any], channels: int = 3, stride_probe: int = 256
    ) -> None:
        super().__init__()
        if not isinstance(layers[-1], Detect):
            raise ValueError("DetectionModel: the last layer must be a Detect head")
        self.model = layers
        self._saved = frozenset(save)
        self.spec = spec
        self.channels = channels
        self.nc: int = self.head.nc
        self.names: dict[int, str] = {i: str(i) for i in range(self.nc)}
        self.end2end: bool = self.head.end2end
        self.stride = self._probe_strides(stride_probe)
        self.head.stride = self.stride.clone()
        self.head.bias_init()

    @property
    def head(self) -> Detect:
        """The Detect layer (the last layer)."""
        return self.model[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, Any]:
        """Run the network on ``x (B, C, H, W)``, H and W multiples of the largest stride.

        Returns:
            eval: ``(B, 4+nc, A)`` xywh boxes in input pixels + class probabilities, or (YOLO26 with
            ``head.nms_free``) ``(B, min(max_det, A), 6)`` ``[x1, y1, x2, y2, score, class]``.
            train: ``{"boxes": (B, 4*reg_max, A), "scores": (B, nc, A) logits, "feats": [per-level head inputs]}``,
            for YOLO26 ``{"one2many": {...}, "one2one": {...}}`` (one2one computed on detached features).
        """
        return self._run(x, stop_at_head=False)

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

    def head_inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The per-level feature maps fed to the head, ``[(B, C_i, H_i, W_i), ...]``."""
        feats = self._run(x, stop_at_head=True)
        return feats if isinstance(feats, list) else [feats]

    def _probe_strides(self, size: int) -> torch.Tensor:
        was_training = self.training
        self.eval()  # eval: the probe must not touch BatchNorm running statistics
        try:
            with torch.no_grad():
                feats = self.head_inputs(torch.zeros(1, self.channels, size, size))
        finally:
            self.train(was_training)
        return torch.tensor([size / f.shape[-2] for f in feats], dtype=torch.float32)

    def set_nms_free(self, flag: bool) -> None:
        """Select the YOLO26 one-to-one branch for eval outputs (``(B, K, 6)``, no NMS needed) or not."""
        if flag and not self.end2end:
            raise ConfigError("nms=False (NMS-free head) needs an end-to-end model such as YOLO26; "
                              "this model has no one-to-one head: keep NMS on")
        self.head.nms_free = bool(flag)

    def fuse(self) -> DetectionModel:
        """Fold every BatchNorm into its conv (in place; idempotent). Both YOLO26 branches are kept."""
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
