"""The ``Backend`` protocol (declared once) and the checks every backend shares.

A backend runs a detector on letterboxed batches. The predictor and the validator only use this surface, so a new
engine (INT8, TensorRT, ...) plugs in by implementing it; :class:`BackendBase` gives the shared parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from yolokit.errors import ConfigError

__all__ = ["Backend", "BackendBase", "check_batch", "check_nms_free"]


@runtime_checkable
class Backend(Protocol):
    """What the predictor and the validator need from an inference backend.

    ``backend(batch)`` takes ``(B, 3, H, W)`` float RGB in [0, 1] (``H``, ``W`` multiples of ``stride``) and
    returns float32 ``(B, 4+nc, A)`` (``cx, cy, w, h`` in input pixels + class probabilities, one column per anchor)
    with the default head, or ``(B, K, 6)`` rows ``x1, y1, x2, y2, score, class`` with the NMS-free head.

    Attributes:
        stride: largest model stride (input sides must be multiples of it).
        names: class index -> name.
        dynamic: any multiple of ``stride`` is accepted (rectangular letterboxing allowed).
        metadata: the weights' metadata (may be empty).
        device: where the inputs go.
        engine: the engine actually used (``"eager"``, ``"channels_last"``, ``"jit"``, ``"onnxruntime"``).
        end2end: detection only: the model has the YOLO26 one-to-one (NMS-free) head.
        nms_free: detection only: the one-to-one head is selected.
    """

    def __call__(self, batch: torch.Tensor) -> torch.Tensor: ...

    @property
    def stride(self) -> int: ...

    @property
    def names(self) -> dict[int, str]: ...

    @property
    def dynamic(self) -> bool: ...

    @property
    def metadata(self) -> dict[str, Any]: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def engine(self) -> str: ...

    @property
    def end2end(self) -> bool: ...

    @property
    def nms_free(self) -> bool: ...

    def set_nms_free(self, flag: bool) -> None:
        """Select the one-to-one head (``(B, K, 6)`` output, no NMS) or the default one-to-many head."""
        ...


def check_batch(batch: Any, stride: int) -> tuple[int, int]:
    """``(H, W)`` of a ``(B, 3, H, W)`` tensor whose sides are multiples of ``stride``.

    Raises:
        ValueError: not a 4-D 3-channel tensor, or a side not a multiple of ``stride``.
    """
    if not isinstance(batch, torch.Tensor) or batch.ndim != 4 or batch.shape[1] != 3:
        raise ValueError(f"backend: expected a (B, 3, H, W) tensor, got {getattr(batch, 'shape', type(batch))}")
    h, w = int(batch.shape[2]), int(batch.shape[3])
    if h % stride or w % stride:
        raise ValueError(f"backend: input sides must be multiples of {stride}, got {(h, w)}")
    return h, w


def check_nms_free(flag: bool, end2end: bool) -> None:
    """Refuse the NMS-free head for a model without a one-to-one head.

    Raises:
        ConfigError: ``flag`` is true and ``end2end`` false.
    """
    if flag and not end2end:
        raise ConfigError("nms=False (end-to-end, NMS-free) needs a YOLO26 model with a one-to-one head; "
                          "this model has none: keep nms=True")


class BackendBase:
    """Shared behaviour of yolokit's backends; subclasses implement the :class:`Backend` surface."""

    def warmup(self, imgsz: int | Sequence[int] = 640, batch: int = 1) -> None:
        """Run one forward pass on zeros of ``(batch, 3, h, w)`` (builds anchors, kernels, buffers, jit graphs)."""
        h, w = (imgsz, imgsz) if isinstance(imgsz, int) else (imgsz[0], imgsz[-1])
        self(torch.zeros(batch, 3, h, w))  # type: ignore[operator]
