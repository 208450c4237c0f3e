"""Inference backends: one callable surface for the predictor and the evaluator.

A backend is called as ``backend(batch (B, 3, H, W) float32 RGB in [0, 1]) -> Tensor`` and exposes ``stride``
(int, largest model stride), ``names`` (dict), ``dynamic`` (any multiple of ``stride`` is accepted, so rectangular
letterboxing is allowed), ``end2end`` (has the YOLO26 one-to-one head) and ``set_nms_free(flag)``.

Threads: creating the first backend sets ``torch.set_num_threads`` to the number of *physical* cores available to
the process (affinity-aware; ``logical // threads_per_core``, hyper-threads rarely help convolutions), once per
process. It does nothing when ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` is set, and an explicit ``num_threads``
argument always wins. Calling ``torch.set_num_threads`` yourself after the first backend is created is respected.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from yolokit.errors import ConfigError

__all__ = ["TorchBackend", "physical_cores", "configure_threads"]

logger = logging.getLogger(__name__)
_threads_configured = False


def _threads_per_core() -> int:
    """Hardware threads per physical core from Linux sysfs (1 when unknown)."""
    siblings = Path("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list")
    try:
        text = siblings.read_text().strip()
    except OSError:
        return 1
    count = 0
    for part in text.split(","):
        low, _, high = part.partition("-")
        count += int(high) - int(low) + 1 if high else 1
    return max(count, 1)


def physical_cores() -> int:
    """Physical cores usable by this process: CPUs in its affinity mask divided by threads per core."""
    try:
        logical = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        logical = os.cpu_count() or 1
    return max(logical // _threads_per_core(), 1)


def configure_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op threads once per process (see the module docstring); return the count in use."""
    global _threads_configured
    if num_threads is not None:
        if num_threads < 1:
            raise ConfigError(f"num_threads must be >= 1, got {num_threads}: pass e.g. num_threads=4")
        torch.set_num_threads(int(num_threads))
        _threads_configured = True
    elif not _threads_configured and not (os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS")):
        torch.set_num_threads(physical_cores())
        _threads_configured = True
        logger.debug("torch threads set to %d (physical cores)", torch.get_num_threads())
    return torch.get_num_threads()


class TorchBackend:
    """A PyTorch ``DetectionModel`` prepared for inference: fused Conv+BN, eval mode, ``torch.inference_mode``.

    Args:
        model: a ``DetectionModel``. The backend works on a deep copy (``copy=True``, the default) so fusing,
            half precision, device moves and the NMS-free switch never change the caller's model (it stays
            trainable); pass ``copy=False`` to prepare the given model in place and save the memory.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        half: fp16 weights and inputs (CUDA only; on CPU a warning is logged and fp32 is used).
        fuse: fold BatchNorm into the convolutions (outputs equal within 1e-5, faster).
        num_threads: torch intra-op threads (default: physical cores, see :func:`configure_threads`).
        copy: work on a deep copy of ``model``.
    """

    dynamic = True

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu", half: bool = False, fuse: bool = True,
                 num_threads: int | None = None, copy: bool = True) -> None:
        for attribute in ("stride", "names", "end2end", "set_nms_free"):
            if not hasattr(model, attribute):
                raise ConfigError(f"TorchBackend expects a yolokit DetectionModel, got {type(model).__name__} "
                                  f"without '{attribute}': build it with yolokit.models.builder.build_model")
        configure_threads(num_threads)
        self.device = torch.device(device)
        if half and self.device.type == "cpu":
            logger.warning("half=True needs a CUDA device; running in fp32 on CPU")
            half = False
        self.half = half
        self.dtype = torch.float16 if half else torch.float32
        self.model = _prepare(model, self.device, self.dtype, fuse, copy)

    @property
    def stride(self) -> int:
        """Largest stride of the model (input sides must be multiples of it)."""
        return int(max(float(s) for s in self.model.stride))

    @property
    def names(self) -> dict[int, str]:
        return dict(self.model.names)

    @property
    def end2end(self) -> bool:
        return bool(self.model.end2end)

    def set_nms_free(self, flag: bool) -> None:
        """Select the YOLO26 one-to-one head (``(B, K, 6)`` output, no NMS) or the default one-to-many head."""
        if flag and not self.end2end:
            raise ConfigError("nms=False (end-to-end, NMS-free) needs a YOLO26 model with a one-to-one head; "
                              "this model has none: keep nms=True")
        self.model.set_nms_free(bool(flag))

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` float in [0, 1] -> float32 ``(B, 4+nc, A)`` xywh + probabilities, or ``(B, K, 6)``."""
        if not isinstance(batch, torch.Tensor) or batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"backend: expected a (B, 3, H, W) tensor, got {getattr(batch, 'shape', type(batch))}")
        stride = self.stride
        if batch.shape[2] % stride or batch.shape[3] % stride:
            raise ValueError(f"backend: input sides must be multiples of {stride}, got {tuple(batch.shape[2:])}")
        with torch.inference_mode():
            output = self.model(batch.to(self.device, self.dtype))
        if isinstance(output, (list, tuple)):
            output = output[0]
        return output.float()

    def warmup(self, imgsz: int | Sequence[int] = 640, batch: int = 1) -> None:
        """Run one forward pass on zeros (builds caches, e.g. anchors and CUDA kernels)."""
        h, w = (imgsz, imgsz) if isinstance(imgsz, int) else (imgsz[0], imgsz[-1])
        self(torch.zeros(batch, 3, h, w))

    def __repr__(self) -> str:
        return f"TorchBackend(device={self.device}, dtype={self.dtype}, stride={self.stride}, end2end={self.end2end})"


def _prepare(model: nn.Module, device: torch.device, dtype: torch.dtype, fuse: bool, make_copy: bool) -> Any:
    """Copy (optionally), fuse, switch to eval, move to ``device``/``dtype`` and freeze gradients."""
    prepared = copy.deepcopy(model) if make_copy else model
    if fuse and hasattr(prepared, "fuse"):
        prepared.fuse()
    prepared.eval()
    prepared.to(device=device, dtype=dtype)
    for parameter in prepared.parameters():
        parameter.requires_grad_(False)
    return prepared
