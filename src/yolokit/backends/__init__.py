"""Inference backends: one callable surface (:class:`Backend`) for the predictor and the evaluator.

- :mod:`yolokit.backends.base`: the ``Backend`` protocol and the shared checks / warm-up.
- :mod:`yolokit.backends.torch_backend`: ``TorchBackend`` (engines ``eager``, ``channels_last``, ``jit``).
- :mod:`yolokit.backends.onnxruntime_backend`: ``OnnxRuntimeBackend`` (CPU; graphs cached by
  :mod:`yolokit.export.graph_cache`).
- :mod:`yolokit.backends.factory`: ``create_backend(model, device, half, engine="auto", num_threads=None)``.

Layering: backends use ``models``/``nn``/``export``; ``export``, ``predict`` and ``eval`` never import backends
(they take any object with the ``Backend`` surface). Public names are imported lazily (``import yolokit.backends``
alone loads no torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from yolokit.utils.lazy import lazy_getattr

__all__ = ["Backend", "BackendBase", "TorchBackend", "OnnxRuntimeBackend", "create_backend", "ENGINES",
           "ALL_ENGINES", "AUTO_ONNXRUNTIME_MAX_PARAMS"]

_LAZY = {
    "Backend": "yolokit.backends.base",
    "BackendBase": "yolokit.backends.base",
    "TorchBackend": "yolokit.backends.torch_backend",
    "ENGINES": "yolokit.backends.torch_backend",
    "OnnxRuntimeBackend": "yolokit.backends.onnxruntime_backend",
    "create_backend": "yolokit.backends.factory",
    "ALL_ENGINES": "yolokit.backends.factory",
    "AUTO_ONNXRUNTIME_MAX_PARAMS": "yolokit.backends.factory",
}

if TYPE_CHECKING:  # pragma: no cover
    from yolokit.backends.base import Backend, BackendBase
    from yolokit.backends.factory import ALL_ENGINES, AUTO_ONNXRUNTIME_MAX_PARAMS, create_backend
    from yolokit.backends.onnxruntime_backend import OnnxRuntimeBackend
    from yolokit.backends.torch_backend import ENGINES, TorchBackend


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
