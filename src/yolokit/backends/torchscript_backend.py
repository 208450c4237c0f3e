"""``TorchScriptBackend``: a TorchScript file written by yolokit's export, behind the :class:`Backend` surface.

``backend(batch (B, 3, H, W) float in [0, 1]) -> Tensor`` (``(B, 4+nc, A)`` xywh + probabilities, or ``(B, K, 6)``
rows for a file exported with the YOLO26 NMS-free head); names, stride and head come from the file's
``yolokit.json`` (:func:`yolokit.export.torchscript.load_torchscript`). A file holds one head only. Threads: as
:class:`~yolokit.backends.torch_backend.TorchBackend` (``num_threads`` applied around each call, then restored).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from yolokit.backends.base import BackendBase, check_batch, check_nms_free
from yolokit.errors import ConfigError
from yolokit.utils.threads import check_num_threads, torch_threads

__all__ = ["TorchScriptBackend"]


class TorchScriptBackend(BackendBase):
    """Run a yolokit TorchScript export (see the module docstring).

    Args:
        source: the file (path or bytes).
        device: where the module and inputs go.
        num_threads: torch intra-op threads during each call (``None``: torch's setting).
        trusted: load a TorchScript file yolokit did not export here (its code runs: only from a trusted source).
    """

    half = False
    dtype = torch.float32
    engine = "torchscript"

    def __init__(self, source: str | Path | bytes, device: str | torch.device = "cpu",
                 num_threads: int | None = None, *, trusted: bool = False) -> None:
        from yolokit.export.torchscript import load_torchscript

        self.device = torch.device(device)
        self.num_threads = check_num_threads(num_threads)
        self.module, self.metadata = load_torchscript(source, str(self.device), trusted=trusted)
        self.nms_free = bool(self.metadata.get("nms_free", False))

    @property
    def stride(self) -> int:
        return int(max(float(s) for s in self.metadata["stride"]))

    @property
    def names(self) -> dict[int, str]:
        return dict(self.metadata["names"])

    @property
    def end2end(self) -> bool:
        return bool(self.metadata.get("end2end", False))

    @property
    def dynamic(self) -> bool:
        return bool(self.metadata.get("dynamic", True))

    def set_nms_free(self, flag: bool) -> None:
        """Only the head the file holds can be selected."""
        check_nms_free(bool(flag), self.end2end)
        if bool(flag) != self.nms_free:
            held = "NMS-free end-to-end" if self.nms_free else "one-to-many (NMS)"
            raise ConfigError(f"this TorchScript file holds only the {held} head, got nms={not flag}: pass nms="
                              f"{not self.nms_free}, or export it again with nms={not flag}")

    def __call__(self, batch: torch.Tensor) -> Any:
        """``(B, 3, H, W)`` float in [0, 1] -> float32 ``(B, 4+nc, A)`` or ``(B, K, 6)``."""
        h, w = check_batch(batch, self.stride)
        if not self.dynamic and [h, w] != list(self.metadata["imgsz"]):
            raise ConfigError(f"this TorchScript model takes a fixed {tuple(self.metadata['imgsz'])} input, got "
                              f"{(h, w)}: pass that imgsz")
        with torch_threads(self.num_threads), torch.inference_mode():
            return self.module(batch.to(self.device, torch.float32)).float()

    def __repr__(self) -> str:
        return f"TorchScriptBackend(device={self.device}, stride={self.stride}, nms_free={self.nms_free})"
