"""``read_weights``: any supported weights file (ONNX excepted) -> ``WeightsFile``, the file opened once.

One reader per format works on the ``OpenedWeights`` that detected it: safetensors from the bytes read once (its
sha256 taken from the same bytes, tensor by tensor); a yolokit ``.pt`` with the restricted unpickler limited to
torch's tensor globals (the guarded path of reference checkpoints, never ``torch.load``); a
reference or YOLOv5 ``.pt`` with the restricted unpickler on the archive already open, reusing the opcode walk of
detection.
Tensors keep their **stored** dtype (fp16 stays fp16) and their names lose the wrapper prefixes ``module.`` /
``_orig_mod.`` (``keys.strip_wrapper_prefixes``).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolokit.errors import WeightsError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from yolokit.weights.formats import OpenedWeights

__all__ = ["WeightsFile", "read_source", "read_weights", "warn_non_finite"]
logger = logging.getLogger(__name__)

_ONNX_MESSAGE = (
    "is an ONNX model: yolokit's weights loaders read PyTorch weights only; predict or validate with YOLO(path), "
    "or load the .safetensors or .pt file it was exported from"
)


@dataclasses.dataclass
class WeightsFile:
    """A weights file read into memory: tensors in their stored dtype and metadata with int ``names`` keys."""

    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, Any]
    format: str
    sha256: str
    path: Path


def read_weights(path: str | Path) -> WeightsFile:
    """Read any supported weights file (ONNX excepted) -> ``WeightsFile``; tensors keep their stored dtype.

    ``metadata`` is normalized (``names`` with int keys). A safetensors file without yolokit metadata gives
    ``metadata == {}`` (its tensors can still be copied with ``transfer_weights(model, path)``).
    """
    from yolokit.weights.formats import open_weights

    with open_weights(path) as source:
        return read_source(source)


def read_source(source: OpenedWeights) -> WeightsFile:
    """``read_weights`` on a file already opened and detected (``formats.open_weights``)."""
    from yolokit.weights.keys import strip_wrapper_prefixes
    from yolokit.weights.metadata import normalize_metadata

    if source.format == "onnx":
        raise WeightsError(f"{source.path} {_ONNX_MESSAGE}")
    if source.problem is not None:
        raise source.problem
    try:
        state_dict, raw = _read_tensors(source)
    except OSError as err:  # PermissionError / EIO while reading the tensors
        raise WeightsError(f"{source.path}: cannot read the weights file ({err.strerror or err})") from None
    warn_non_finite(state_dict, source.path)
    metadata = {} if raw is None else normalize_metadata(raw, source=str(source.path))
    return WeightsFile(
        state_dict=strip_wrapper_prefixes(state_dict),
        metadata=metadata,
        format=source.format,
        sha256=source.sha256(),
        path=source.path,
    )


def warn_non_finite(state_dict: dict[str, torch.Tensor], path: Path) -> list[str]:
    """Log a warning naming the floating tensors that hold NaN or inf (such weights load but predict nothing);
    returns their names."""
    bad = [name for name, tensor in state_dict.items() if tensor.is_floating_point() and not _finite(tensor)]
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        logger.warning("%s: %d tensor(s) hold NaN or inf values (%s); the model will not predict sensibly: "
                       "re-train or re-download the weights", path, len(bad), shown)  # fmt: skip
    return bad


def _finite(tensor: torch.Tensor) -> bool:
    try:
        return bool(tensor.isfinite().all())
    except (RuntimeError, NotImplementedError):  # e.g. float8 dtypes: checked in fp32
        return bool(tensor.float().isfinite().all())


def _read_tensors(source: OpenedWeights) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """``(state_dict, raw metadata or None)`` by the reader of the source's format."""
    from yolokit.weights import native

    if source.format == "safetensors":
        state_dict, metadata, source._sha256 = native.load_safetensors_handle(source.path, source.handle, source.size)
        return state_dict, metadata
    if source.format == "yolokit-pt" and source.archive is not None:
        return native.load_native_archive(source.archive)
    if source.format == "ultralytics-pt" and source.archive is not None:
        from yolokit.weights.foreign import read_reference

        return read_reference(source.archive, source.globals, source.sha256())
    if source.format == "yolov5-pt" and source.archive is not None:
        from yolokit.weights.yolov5 import read_yolov5

        return read_yolov5(source.archive, source.globals, source.sha256())
    raise WeightsError(f"{source.path}: no reader for format {source.format!r}; expected one of the supported formats")
