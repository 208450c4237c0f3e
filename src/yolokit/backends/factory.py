"""``create_backend``: the inference backend ``YOLO.predict`` / ``YOLO.val`` use for a model, device and engine.

``engine`` is one of :data:`ALL_ENGINES`: the :class:`~yolokit.backends.torch_backend.TorchBackend` engines
(``eager``, ``channels_last``, ``jit``), ``onnxruntime``
(:class:`~yolokit.backends.onnxruntime_backend.OnnxRuntimeBackend`, CPU, fp32) or ``auto``. ``auto`` resolves to
ONNX Runtime on the CPU in fp32 for models of at most :data:`AUTO_ONNXRUNTIME_MAX_PARAMS` parameters (the n and s
scales, where it is faster; larger models are not, see ``benchmarks/README.md``) when ``onnx`` and ``onnxruntime``
are installed, and to the torch backend's own ``auto`` otherwise. The first use of a set of weights exports the
graph, which is then cached on disk; ``auto`` falls back to PyTorch with a warning when the export fails.

Creating a backend changes no process-wide state (torch's thread count included): ``num_threads`` goes to the ONNX
Runtime session, or is applied by the torch backend around each call only.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

import torch
from torch import nn

from yolokit.backends.torch_backend import ENGINES, TorchBackend
from yolokit.errors import ConfigError
from yolokit.utils.threads import check_num_threads

__all__ = ["create_backend", "ALL_ENGINES", "AUTO_ONNXRUNTIME_MAX_PARAMS"]

ALL_ENGINES = (*ENGINES, "onnxruntime")
AUTO_ONNXRUNTIME_MAX_PARAMS = 15_000_000  # engine="auto" uses ONNX Runtime up to here (n, s); see the docstring

logger = logging.getLogger(__name__)


def _onnxruntime_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))


def _onnxruntime_backend(model: nn.Module, num_threads: int | None) -> Any:
    from yolokit.backends.onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend.from_model(model, num_threads=num_threads)


def create_backend(model: nn.Module, device: str | torch.device = "cpu", half: bool = False, engine: str = "auto",
                   num_threads: int | None = None) -> Any:
    """The inference backend for ``engine`` (see the module docstring); ``model`` itself is never changed.

    Raises:
        ConfigError: unknown engine, bad ``num_threads``, or ``engine="onnxruntime"`` on a device other than the CPU.
    """
    if engine not in ALL_ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ALL_ENGINES)}, got {engine!r}: pass e.g. engine='auto'")
    num_threads = check_num_threads(num_threads)
    try:
        on_cpu = torch.device(device).type == "cpu"
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}: pass e.g. "
                          "device='cpu'") from error
    if engine == "onnxruntime":
        if not on_cpu:
            raise ConfigError(f"engine='onnxruntime' runs on the CPU, got device={device!r}: pass device='cpu' or "
                              "engine='auto'")
        if half:
            logger.warning("half=True is not supported by engine='onnxruntime'; running in fp32")
        return _onnxruntime_backend(model, num_threads)
    small = sum(p.numel() for p in model.parameters()) <= AUTO_ONNXRUNTIME_MAX_PARAMS
    if engine == "auto" and on_cpu and not half and small and _onnxruntime_installed():
        try:
            return _onnxruntime_backend(model, num_threads)
        except Exception as error:  # noqa: BLE001 - any export failure: the PyTorch engine still works
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            logger.warning("engine='auto': ONNX Runtime cannot run this model (%s); using PyTorch instead", first)
    return TorchBackend(model, device=device, half=half, engine=engine, num_threads=num_threads)
