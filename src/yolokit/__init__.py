"""yolokit: YOLO object detection built around model weights (Apache-2.0).

Public API: ``YOLO``, ``load_weights``, ``save_weights``, ``__version__``. Everything is imported lazily so that
``import yolokit`` stays light (no torch import until a model or weights function is used).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["YOLO", "load_weights", "save_weights", "__version__"]

_LAZY = {
    "YOLO": ("yolokit.model", "YOLO"),
    "load_weights": ("yolokit.weights", "load_weights"),
    "save_weights": ("yolokit.weights", "save_weights"),
}

if TYPE_CHECKING:  # pragma: no cover
    from yolokit.model import YOLO
    from yolokit.weights import load_weights, save_weights


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        value = getattr(importlib.import_module(module_name), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'yolokit' has no attribute {name!r}")
