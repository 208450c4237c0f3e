"""Weights files: detect, read, load, transfer, save and convert.

    fmt = detect_format("best.pt")              # "safetensors" | "yolokit-pt" | "ultralytics-pt" | "onnx"
    wf = read_weights("yolo11n.pt")             # WeightsFile(state_dict, metadata, format, sha256, path)
    model = load_model("yolo11n.safetensors")   # DetectionModel built from the embedded spec, eval mode
    model = load_weights("yolo11n.pt")          # the same loader under its public name (yolokit.load_weights)
    report = transfer_weights(model, "other.pt")  # TransferReport: tensors copied by name and shape
    save_weights(model, "best.safetensors", half=True)
    convert_weights("yolo11n.pt", "yolo11n.safetensors")

The format is always detected from the file's content, never from its name, and every loader opens the file once
(``formats``). dtypes: ``read_weights`` returns the tensors in their **stored** dtype (fp16 stays fp16, so round
trips are bit-exact and testable); ``load_model`` and ``transfer_weights`` copy them into a model whose parameters
are fp32. Modules: ``formats`` (detection), ``read`` (``read_weights``), ``load`` (``load_model``), ``transfer``,
``save`` (``save_weights``, ``convert_weights``), ``keys`` (DDP / ``torch.compile`` prefixes), ``native``
(safetensors and native ``.pt``), ``foreign`` (reference checkpoints), ``metadata``, ``inspect``, ``download``.
Importing this package does not import torch; the names below are imported from their module on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from yolokit.utils.lazy import lazy_getattr

__all__ = [
    "FORMATS",
    "TransferReport",
    "WeightsFile",
    "convert_weights",
    "detect_format",
    "load_model",
    "load_weights",
    "read_weights",
    "save_weights",
    "transfer_weights",
]

_LAZY = {
    "FORMATS": "yolokit.weights.formats",
    "detect_format": "yolokit.weights.formats",
    "WeightsFile": "yolokit.weights.read",
    "read_weights": "yolokit.weights.read",
    "load_model": "yolokit.weights.load",
    "load_weights": "yolokit.weights.load",
    "TransferReport": "yolokit.weights.transfer",
    "transfer_weights": "yolokit.weights.transfer",
    "save_weights": "yolokit.weights.save",
    "convert_weights": "yolokit.weights.save",
}

if TYPE_CHECKING:  # pragma: no cover
    from yolokit.weights.formats import FORMATS, detect_format
    from yolokit.weights.load import load_model, load_weights
    from yolokit.weights.read import WeightsFile, read_weights
    from yolokit.weights.save import convert_weights, save_weights
    from yolokit.weights.transfer import TransferReport, transfer_weights


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
