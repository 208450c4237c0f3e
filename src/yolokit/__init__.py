"""yolokit: YOLO object detection built around model weights (Apache-2.0).

Public API: ``YOLO``, ``load_weights``, ``save_weights``, ``__version__``. Everything is imported lazily so that
``import yolokit`` stays light (no torch import until a model or weights function is used).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from yolokit.utils.lazy import lazy_getattr

__version__ = "0.1.0"
__all__ = ["YOLO", "load_weights", "save_weights", "__version__"]

_LAZY = {"YOLO": "yolokit.model", "load_weights": "yolokit.weights", "save_weights": "yolokit.weights"}

if TYPE_CHECKING:  # pragma: no cover
    from yolokit.model import YOLO
    from yolokit.weights import load_weights, save_weights


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
