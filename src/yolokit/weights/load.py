"""``load_model(path)``: a ready model built from a weights file (``load_weights`` is the same loader)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolokit.errors import WeightsError

if TYPE_CHECKING:  # pragma: no cover
    from yolokit.models.detector import DetectionModel
    from yolokit.weights.read import WeightsFile

__all__ = ["build_from_weights", "load_model", "load_weights"]


def load_model(path: str | Path) -> DetectionModel:
    """Build the model a weights file describes and load all its tensors.

    Built from the embedded spec with ``len(names)`` classes; every tensor loaded strictly (a mismatch raises
    ``WeightsError`` naming the keys and shapes); ``names`` set, ``model.metadata`` attached, eval mode, fp32
    parameters. The file is opened once. To copy weights into a model you already have, use
    ``transfer_weights(model, source)``.
    """
    from yolokit.weights.read import read_weights

    return build_from_weights(read_weights(_checked_path(path, "load_model")))


def load_weights(path: str | Path) -> DetectionModel:
    """The public loader (``yolokit.load_weights``): same as ``load_model(path)``."""
    from yolokit.weights.read import read_weights

    return build_from_weights(read_weights(_checked_path(path, "load_weights")))


def build_from_weights(weights: WeightsFile) -> DetectionModel:
    """The model described by a ``WeightsFile``'s metadata, with its tensors loaded (strict), in eval mode."""
    from yolokit.tasks import get_task
    from yolokit.weights.native import check_fit

    if not weights.metadata:
        raise WeightsError(
            f"{weights.path}: the file has no yolokit metadata (architecture spec and class names), so no model can "
            "be built from it; build the model first and copy the tensors with transfer_weights(model, path)"
        )
    names = weights.metadata["names"]
    build_model = get_task(weights.metadata.get("task") or "detect").load("build_model")  # the task's builder
    model = build_model(weights.metadata["spec"], num_classes=len(names))
    check_fit(weights.path, model.state_dict(), weights.state_dict, strict=True)
    model.load_state_dict(weights.state_dict, strict=True)
    model.names = dict(names)
    model.metadata = weights.metadata
    return model.eval()


def _checked_path(path: Any, caller: str) -> str | Path:
    if isinstance(path, (str, os.PathLike)):
        return Path(path)
    hint = "; to copy weights into an existing model use transfer_weights(model, source)"
    raise WeightsError(f"{caller} expects a file path, found {type(path).__name__}{hint}")
