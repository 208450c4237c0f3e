"""``TorchBackend``: a yolokit ``DetectionModel`` prepared for inference in PyTorch (the :class:`Backend` surface).

Engines (``TorchBackend(..., engine=)``), all on the same fused fp32/fp16 weights and equal to the eager fused model
within float rounding (~1e-6 relative):

- ``"eager"``: the plain eager model on ``(B, 3, H, W)`` contiguous tensors (what the reference implementation runs).
- ``"channels_last"``: eager, with weights and inputs in the channels-last (NHWC) memory layout, which oneDNN
  convolutions run without layout reorders, and (on the backend's private copy, ``copy=True``) in-place SiLU
  activations: faster than ``"eager"`` on the CPU with no start-up cost (figures in ``benchmarks/README.md``).
- ``"jit"``: channels-last plus ``torch.jit.trace`` + ``torch.jit.freeze`` of the model, one frozen graph per input
  shape / head choice kept in a small LRU cache (``jit_cache_size``). Tracing costs seconds once per new shape, so
  it pays off only for long runs at one shape (video, folders, validation at a fixed size). Frozen graphs hold the
  weights as constants: call :meth:`TorchBackend.clear_cache` after changing ``backend.model``.
- ``"auto"``: ``"channels_last"`` on CPU (the fastest PyTorch path with no start-up cost), ``"eager"`` elsewhere.

Threads: the backend never changes torch's process-wide thread count. With ``num_threads=None`` (the default) it
runs with torch's own setting (PyTorch defaults to one thread per physical core, or ``OMP_NUM_THREADS``); with
``num_threads=N`` each call sets torch to ``N`` threads and restores the previous count when it returns
(:func:`yolokit.utils.threads.torch_threads`).
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from yolokit.backends.base import BackendBase, check_batch, check_nms_free
from yolokit.errors import ConfigError
from yolokit.utils.threads import check_num_threads, torch_threads

__all__ = ["TorchBackend", "ENGINES"]

ENGINES = ("auto", "eager", "channels_last", "jit")

logger = logging.getLogger(__name__)


class TorchBackend(BackendBase):
    """A PyTorch ``DetectionModel`` prepared for inference: fused Conv+BN, eval mode, ``torch.inference_mode``.

    Args:
        model: a ``DetectionModel``. The backend works on a deep copy (``copy=True``, the default) so fusing,
            half precision, device moves and the NMS-free switch never change the caller's model (it stays
            trainable); pass ``copy=False`` to prepare the given model in place and save the memory.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        half: fp16 weights and inputs (CUDA only; on CPU a warning is logged and fp32 is used).
        fuse: fold BatchNorm into the convolutions (outputs equal within 1e-5, faster).
        num_threads: torch intra-op threads during each call (``None``: torch's current setting; see the module
            docstring; the process-wide count is restored after every call).
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
        self.num_threads = check_num_threads(num_threads)
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
    def metadata(self) -> dict[str, Any]:
        """The metadata ``load_weights`` attached to the model (empty for a model built from a spec)."""
        return dict(getattr(self.model, "metadata", None) or {})

    @property
    def end2end(self) -> bool:
        return bool(self.model.end2end)

    @property
    def nms_free(self) -> bool:
        """True when the YOLO26 one-to-one head is selected."""
        return bool(getattr(self.model.head, "nms_free", False))

    def set_nms_free(self, flag: bool) -> None:
        """Select the YOLO26 one-to-one head (``(B, K, 6)`` output, no NMS) or the default one-to-many head."""
        check_nms_free(flag, self.end2end)
        self.model.set_nms_free(bool(flag))

    def clear_cache(self) -> None:
        """Drop the frozen graphs of the ``"jit"`` engine (needed after changing ``backend.model``'s weights)."""
        self._graphs.clear()

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` float in [0, 1] -> float32 ``(B, 4+nc, A)`` xywh + probabilities, or ``(B, K, 6)``."""
        check_batch(batch, self.stride)
        batch = batch.to(self.device, self.dtype, memory_format=self.memory_format)  # no copy when already so
        with torch_threads(self.num_threads):
            runner = self._graph(batch) if self.engine == "jit" else None  # traced outside inference mode
            with torch.inference_mode():
                output = (runner or self.model)(batch)
        if isinstance(output, (list, tuple)):
            output = output[0]
        return output.float()

    def _graph(self, batch: torch.Tensor) -> Any:
        """The frozen traced graph for this input shape and head choice (built on first use), or None on failure."""
        head = self.model.head
        key = (tuple(batch.shape), batch.dtype, batch.device, bool(getattr(head, "nms_free", False)),
               int(getattr(head, "max_det", 0)))  # a classification head has neither
        if key in self._graphs:
            self._graphs.move_to_end(key)
            return self._graphs[key]
        graph = _trace_frozen(self.model, batch)
        self._graphs[key] = graph
        while len(self._graphs) > self.jit_cache_size:
            self._graphs.popitem(last=False)
        return graph

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
    from yolokit.nn.conv import Conv

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
