"""Model specs, the builder and the detection model.

``yolokit.models.spec`` has no torch dependency; the torch-based names below are imported on first use so that
reading a spec stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from yolokit.utils.lazy import lazy_getattr

__all__ = ["DetectionModel", "build_model", "load_spec", "model_display_name", "model_info", "validate_spec"]

_LAZY = {
    "DetectionModel": "yolokit.models.detector",
    "build_model": "yolokit.models.builder",
    "load_spec": "yolokit.models.spec",
    "model_display_name": "yolokit.models.spec",
    "validate_spec": "yolokit.models.spec",
    "model_info": "yolokit.models.info",
}

if TYPE_CHECKING:  # pragma: no cover
    from yolokit.models.builder import build_model
    from yolokit.models.detector import DetectionModel
    from yolokit.models.info import model_info
    from yolokit.models.spec import load_spec, model_display_name, validate_spec


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
