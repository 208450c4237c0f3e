"""Inference backends: one callable surface for the predictor and the evaluator.

A backend is called as ``backend(batch (B, 3, H, W) float32 RGB in [0, 1]) -> Tensor`` and exposes ``stride``
(int, largest model stride), ``names`` (dict), ``dynamic`` (any multiple of ``stride`` is accepted, so rectangular
letterboxing is allowed), ``end2end`` (has the YOLO26 one-to-one head) and ``set_nms_free(flag)``.

Threads: creating the first backend sets ``torch.set_num_threads`` to the number of *physical* cores available to
the process (affinity-aware; ``logical // threads_per_core``, hyper-threads rarely help convolutions), once per
process. It does nothing when ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` is set, and an explicit ``num_threads``
argument always wins. Calling ``torch.set_num_threads`` yourself after the first backend is created is respected.

Engines (``TorchBackend(..., engine=)``), all on the same fused fp32/fp16 weights and equal to the eager fused model
within float rounding (~1e-6 relative):

- ``"eager"``: the plain eager model on ``(B, 3, H, W)`` contiguous tensors (what the reference implementation runs).
- ``"channels_last"``: eager, with weights and inputs in the channels-last (NHWC) memory layout, which oneDNN
  convolutions run without layout reorders, and (on the backend's private copy, ``copy=True``) in-place SiLU
  activations: ~15-25% less CPU inference time than ``"eager"``, no start-up cost.
- ``"jit"``: channels-last plus ``torch.jit.trace`` + ``torch.jit.freeze`` of the model, one frozen graph per input
  shape / head choice kept in a small LRU cache (``jit_cache_size``). Tracing costs seconds once per new shape, so
  it pays off only for long runs at one shape (video, folders, validation at a fixed size). Frozen graphs hold the
  weights as constants: call :meth:`TorchBackend.clear_cache` after changing ``backend.model``.
- ``"auto"``: ``"channels_last"`` on CPU (the fastest PyTorch path with no start-up cost), ``"eager"`` elsewhere.

:func:`create_backend` is what ``YOLO.predict`` / ``YOLO.val`` call. It adds ``engine="onnxruntime"``
(:class:`yolokit.export.runtime.OnnxRuntimeBackend`, CPU, fp32) and resolves ``engine="auto"`` to it on the CPU in
fp32 for models of at most :data:`AUTO_ONNXRUNTIME_MAX_PARAMS` parameters (the n and s scales) when ``onnx`` and
``onnxruntime`` are installed. Measured on this project's 2-core benchmark machine at 640x480 (inference,
``channels_last`` / ``onnxruntime``): n models 1.24-1.55x and s models 1.24-1.62x faster on ONNX Runtime; m
models 0.81-0.91x (slower) and x models 0.85-1.03x (no gain), so larger models stay on PyTorch. The first use of a
set of weights exports the graph (1.6-1.9 s for n, 1.9-2.6 s for s models), which is then cached on disk.
``"auto"`` falls back to ``"channels_last"`` with a warning when the export fails.
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from yolokit.errors import ConfigError

__all__ = ["TorchBackend", "create_backend", "physical_cores", "configure_threads", "ENGINES", "ALL_ENGINES",
           "AUTO_ONNXRUNTIME_MAX_PARAMS"]

ENGINES = ("auto", "eager", "channels_last", "jit")  # TorchBackend's
ALL_ENGINES = (*ENGINES, "onnxruntime")  # create_backend's
AUTO_ONNXRUNTIME_MAX_PARAMS = 15_000_000  # engine="auto" uses ONNX Runtime up to here (n, s); see the docstring

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
        engine: ``"auto"`` | ``"eager"`` | ``"channels_last"`` | ``"jit"`` (see the module docstring).
        jit_cache_size: frozen graphs kept by the ``"jit"`` engine (one per input shape and head choice).
    """

    dynamic = True

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu", half: bool = False, fuse: bool = True,
                 num_threads: int | None = None, copy: bool = True, engine: str = "auto",
                 jit_cache_size: int = 4) -> None:
        for attribute in ("stride", "names", "end2end", "set_nms_free"):
            if not hasattr(model, attribute):
                raise ConfigError(f"TorchBackend expects a yolokit DetectionModel, got {type(model).__name__} "
                                  f"without '{attribute}': build it with yolokit.models.builder.build_model")
        if engine not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}: pass e.g. engine='auto'")
        configure_threads(num_threads)
        self.device = torch.device(device)
        if half and self.device.type == "cpu":
            logger.warning("half=True needs a CUDA device; running in fp32 on CPU")
            half = False
        self.half = half
        self.dtype = torch.float16 if half else torch.float32
        if engine == "auto":
            engine = "channels_last" if self.device.type == "cpu" else "eager"
        self.engine = engine
        self.memory_format = torch.contiguous_format if engine == "eager" else torch.channels_last
        self.model = _prepare(model, self.device, self.dtype, fuse, copy, self.memory_format)
        self.jit_cache_size = max(int(jit_cache_size), 1)
        self._graphs: OrderedDict[tuple, Any] = OrderedDict()

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

    def clear_cache(self) -> None:
        """Drop the frozen graphs of the ``"jit"`` engine (needed after changing ``backend.model``'s weights)."""
        self._graphs.clear()

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` float in [0, 1] -> float32 ``(B, 4+nc, A)`` xywh + probabilities, or ``(B, K, 6)``."""
        if not isinstance(batch, torch.Tensor) or batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"backend: expected a (B, 3, H, W) tensor, got {getattr(batch, 'shape', type(batch))}")
        stride = self.stride
        if batch.shape[2] % stride or batch.shape[3] % stride:
            raise ValueError(f"backend: input sides must be multiples of {stride}, got {tuple(batch.shape[2:])}")
        batch = batch.to(self.device, self.dtype, memory_format=self.memory_format)  # no copy when already so
        runner = self._graph(batch) if self.engine == "jit" else None  # traced outside inference mode
        with torch.inference_mode():
            output = (runner or self.model)(batch)
        if isinstance(output, (list, tuple)):
            output = output[0]
        return output.float()

    def _graph(self, batch: torch.Tensor) -> Any:
        """The frozen traced graph for this input shape and head choice (built on first use), or None on failure."""
        head = self.model.head
        key = (tuple(batch.shape), batch.dtype, batch.device, bool(head.nms_free), int(head.max_det))
        if key in self._graphs:
            self._graphs.move_to_end(key)
            return self._graphs[key]
        graph = _trace_frozen(self.model, batch)
        self._graphs[key] = graph
        while len(self._graphs) > self.jit_cache_size:
            self._graphs.popitem(last=False)
        return graph

    def warmup(self, imgsz: int | Sequence[int] = 640, batch: int = 1) -> None:
        """Run one forward pass on zeros (builds caches: anchors, the ``"jit"`` graph of this shape, kernels)."""
        h, w = (imgsz, imgsz) if isinstance(imgsz, int) else (imgsz[0], imgsz[-1])
        self(torch.zeros(batch, 3, h, w))

    def __repr__(self) -> str:
        return (f"TorchBackend(device={self.device}, dtype={self.dtype}, engine={self.engine}, stride={self.stride}, "
                f"end2end={self.end2end})")


def _prepare(model: nn.Module, device: torch.device, dtype: torch.dtype, fuse: bool, make_copy: bool,
             memory_format: torch.memory_format = torch.contiguous_format) -> Any:
    """Copy (optionally), fuse, switch to eval, move to ``device``/``dtype``/layout and freeze gradients."""
    prepared = copy.deepcopy(model) if make_copy else model
    if fuse and hasattr(prepared, "fuse"):
        prepared.fuse()
    prepared.eval()
    prepared.to(device=device, dtype=dtype, memory_format=memory_format)
    for parameter in prepared.parameters():
        parameter.requires_grad_(False)
    if make_copy and memory_format == torch.channels_last:
        _inplace_activations(prepared)
    return prepared


def _inplace_activations(model: nn.Module) -> None:
    """Make every ``Conv`` block's SiLU in-place (it acts on the conv's fresh output: one allocation less per layer).

    Only for the backend's private copy: an in-place SiLU cannot be trained through. Modules hold no state, so the
    state_dict is unchanged.
    """
    from yolokit.nn.blocks import Conv

    silu = nn.SiLU(inplace=True)
    for module in model.modules():
        if isinstance(module, Conv) and type(module.act) is nn.SiLU:
            module.act = silu


def _trace_frozen(model: nn.Module, batch: torch.Tensor) -> Any:
    """``torch.jit.trace`` + ``torch.jit.freeze`` of the eval ``model`` at ``batch``'s shape (None if it fails).

    The trace specialises on the shape (anchor grid, top-k size), hence one graph per shape. Tracer and deprecation
    warnings are silenced here only: they concern dynamic shapes, which the per-shape cache makes irrelevant.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.no_grad():
                traced = torch.jit.trace(model, batch.clone(), check_trace=False)
                return torch.jit.freeze(traced.eval())
    except Exception as error:  # noqa: BLE001 - any tracing failure falls back to the eager model
        logger.debug("jit tracing failed (%s: %s); running eager for shape %s", type(error).__name__, error,
                     tuple(batch.shape))
        return None


def _onnxruntime_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))


def create_backend(model: nn.Module, device: str | torch.device = "cpu", half: bool = False, engine: str = "auto",
                   num_threads: int | None = None) -> Any:
    """The inference backend for ``engine`` (see the module docstring); ``model`` itself is never changed.

    Raises:
        ConfigError: unknown engine, or ``engine="onnxruntime"`` on a device other than the CPU.
    """
    if engine not in ALL_ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ALL_ENGINES)}, got {engine!r}: pass e.g. engine='auto'")
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


def _onnxruntime_backend(model: nn.Module, num_threads: int | None) -> Any:
    from yolokit.export.runtime import OnnxRuntimeBackend

    configure_threads(num_threads)  # torch still runs the pre/post-processing
    return OnnxRuntimeBackend.from_model(model, num_threads=num_threads)
