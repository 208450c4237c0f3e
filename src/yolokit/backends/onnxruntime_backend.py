"""``OnnxRuntimeBackend``: an ONNX Runtime (CPU) inference backend with the :class:`~yolokit.backends.Backend` surface.

``backend(batch (B, 3, H, W) float in [0, 1]) -> Tensor`` (float32 ``(B, 4+nc, A)`` xywh + probabilities, or
``(B, K, 6)`` rows with the YOLO26 NMS-free head) plus ``stride``, ``names``, ``dynamic``, ``metadata``, ``end2end``,
``nms_free``, ``set_nms_free(flag)`` and ``warmup(imgsz)``, so the predictor and the validator run it unchanged.

Two ways to build one:

- ``OnnxRuntimeBackend.from_model(model)``: exports the model (default head now; the YOLO26 NMS-free head only when
  ``set_nms_free(True)`` is first used), keeping the graph in the on-disk cache of
  :mod:`yolokit.export.graph_cache` so the next process skips the export. This is what ``YOLO(...).predict()``
  runs on the CPU by default for small models (``engine="auto"``) and with ``engine="onnxruntime"``.
- ``OnnxRuntimeBackend(source)``: an ``.onnx`` file (path or bytes) written by :func:`yolokit.export.onnx.
  export_onnx`; names, stride and head come from its ``metadata_props``. Such a file holds one head only.

Threads are a property of each session, never of the process: ``intra_op_num_threads`` = ``num_threads`` if given,
else ``OMP_NUM_THREADS`` when set, else the physical cores that other processes leave free when the session is
created, with spin-waiting off unless the machine is otherwise idle (:func:`yolokit.utils.threads.session_threads`,
``benchmarks/under_load.py``); one
inter-op thread; graph optimisation level ALL; ``CPUExecutionProvider``; workers spin during a run only
(``session.force_spinning_stop``). torch's thread count is not touched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolokit.backends.base import BackendBase, check_batch, check_nms_free
from yolokit.backends.onnx_checks import check_onnx_metadata
from yolokit.errors import ConfigError, ExportError
from yolokit.export.onnx import INPUT_NAME, decode_metadata, export_onnx, prepare_for_export, require
from yolokit.utils.threads import ThreadPlan, session_threads

__all__ = ["OnnxRuntimeBackend"]

logger = logging.getLogger(__name__)

_REQUIRED_METADATA = ("names", "stride", "nms_free", "end2end", "imgsz", "dynamic", "max_det")


def _session(model_bytes: bytes, threads: ThreadPlan) -> Any:
    """A CPU ``InferenceSession`` on ``model_bytes`` with ``threads.count`` intra-op threads (spinning as
    ``threads.spin`` says) and full graph optimisation."""
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads.count
    if not threads.spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    # Spin between the kernels of one run (low latency) but not after it: spinning workers left running steal the
    # cores from the multi-threaded pre/post-processing (cv2, torch) that follows (see benchmarks/README.md).
    options.add_session_config_entry("session.force_spinning_stop", "1")
    try:
        return ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - ORT raises its own exception types for bad graphs
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"ONNX Runtime cannot load the model ({first}): re-export it with "
                          "yolokit.export.onnx.export_onnx") from error


def _load_graph(model: Any, imgsz: int | Sequence[int], nms_free: bool, cache: bool, threads: ThreadPlan,
                dynamic: bool = True) -> Any:
    """A session on ``model``'s graph, from the on-disk cache when ``cache`` (re-exported if the cached file is bad)."""
    if not cache:
        return _session(export_onnx(model, imgsz=imgsz, dynamic=dynamic, nms_free=nms_free), threads)
    from yolokit.export.graph_cache import cached_graph

    start = time.perf_counter()
    data, path = cached_graph(model, imgsz, dynamic, nms_free)
    try:
        session = _session(data, threads)
    except ExportError as error:
        if path is None:
            raise
        logger.warning("the cached ONNX graph %s does not load (%s); exporting it again", path, error)
        data, path = cached_graph(model, imgsz, dynamic, nms_free, refresh=True)
        session = _session(data, threads)
    logger.debug("ONNX Runtime session ready in %.2f s (graph %s)", time.perf_counter() - start, path or "in memory")
    return session


class OnnxRuntimeBackend(BackendBase):
    """ONNX Runtime CPU backend (see the module docstring).

    Args:
        source: an ONNX model as a file path or bytes, exported by ``export_onnx`` (its metadata is required).
        num_threads: intra-op threads of the session (default: ``OMP_NUM_THREADS`` when set, else the physical cores
            other processes leave free; :func:`yolokit.utils.threads.session_threads`).
    """

    device = torch.device("cpu")
    half = False
    dtype = torch.float32
    engine = "onnxruntime"
    # torch threads for the small tensor ops around a run (NMS, box scaling): one. torch's pool sleeps while ORT
    # runs, and waking it for a millisecond of work costs more than the work on a machine whose other core is busy
    # (NMS of a (1, 84, 8400) output: 5.8 ms on 2 threads vs 0.8 ms on one, measured under load).
    host_threads = 1

    def __init__(self, source: str | Path | bytes, num_threads: int | None = None) -> None:
        data = source if isinstance(source, bytes) else self._read(Path(source))
        threads = session_threads(num_threads)
        self._setup(_session(data, threads), threads)

    def _setup(self, session: Any, threads: ThreadPlan) -> None:
        self.num_threads = int(session.get_session_options().intra_op_num_threads)
        self._threads = threads
        self._model: Any = None  # set by from_model: exports the other head on demand
        self._cache = False
        self._sessions: dict[bool, Any] = {}
        try:
            meta = decode_metadata(dict(session.get_modelmeta().custom_metadata_map))
        except (ValueError, TypeError, RecursionError) as error:  # e.g. names keys that are not ints
            raise ExportError(f"ONNX model metadata is malformed ({type(error).__name__}): re-export the model "
                              "with yolokit's export (format=onnx)") from None  # fmt: skip
        for key in _REQUIRED_METADATA:
            if key not in meta:
                raise ExportError(f"ONNX model has no yolokit metadata '{key}' (not written by yolokit's "
                                  "export_onnx): re-export it with yolokit.export.onnx.export_onnx")
        check_onnx_metadata(meta, list(session.get_inputs()[0].shape), list(session.get_outputs()[0].shape))
        self.metadata: dict[str, Any] = meta
        self._sessions[bool(meta["nms_free"])] = session
        self.nms_free = bool(meta["nms_free"])

    @staticmethod
    def _read(path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as error:
            raise ExportError(f"cannot read ONNX model {path} ({error.strerror}): pass an existing .onnx file") \
                from error

    @classmethod
    def from_model(cls, model: Any, num_threads: int | None = None, imgsz: int | Sequence[int] = 640,
                   cache: bool = True) -> OnnxRuntimeBackend:
        """Export ``model`` (a ``DetectionModel``) with dynamic shapes and build a backend on it.

        The caller's model is not changed; a fused private copy is kept to export the NMS-free head on demand.
        With ``cache=True`` the exported graph is kept on disk (:mod:`yolokit.export.graph_cache`), so the next
        process with the same weights skips the export; ``cache=False`` exports in memory only.
        """
        threads = session_threads(num_threads)  # a bad value fails before the export
        require("onnxruntime")  # fail before spending a second on the export
        require("onnx")
        private = prepare_for_export(model, nms_free=False)
        backend = cls.__new__(cls)
        backend._setup(_load_graph(private, imgsz, nms_free=False, cache=cache, threads=threads), threads)
        backend._model, backend._cache = private, cache
        return backend

    @property
    def stride(self) -> int:
        """Largest stride of the model (input sides must be multiples of it)."""
        return int(max(float(s) for s in self.metadata["stride"]))

    @property
    def names(self) -> dict[int, str]:
        return dict(self.metadata["names"])

    @property
    def end2end(self) -> bool:
        """The file can give final ``(B, K, 6)`` rows: a YOLO26 one-to-one head, or embedded NMS (``embedded_nms``
        metadata: such a file's only output is final, so it reports ``nms_free`` too)."""
        return bool(self.metadata["end2end"] or self.metadata.get("embedded_nms"))

    @property
    def dynamic(self) -> bool:
        """True when any multiple of ``stride`` is accepted (exported with dynamic height/width)."""
        return bool(self.metadata["dynamic"])

    @property
    def session(self) -> Any:
        """The ``InferenceSession`` of the current head."""
        return self._sessions[self.nms_free]

    def set_nms_free(self, flag: bool) -> None:
        """Select the YOLO26 one-to-one head (``(B, K, 6)`` output, no NMS) or the default one-to-many head."""
        flag = bool(flag)
        check_nms_free(flag, self.end2end)
        if flag not in self._sessions:
            if self._model is None:
                held = "NMS-free end-to-end" if self.nms_free else "one-to-many (NMS)"
                raise ConfigError(f"this ONNX file holds only the {held} head, got nms={not flag}: pass nms="
                                  f"{not self.nms_free}, or export it again with nms={not flag}")
            self._sessions[flag] = _load_graph(self._model, self.metadata["imgsz"], nms_free=flag, cache=self._cache,
                                               threads=self._threads, dynamic=self.dynamic)
        self.nms_free = flag

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` float in [0, 1] -> float32 ``(B, 4+nc, A)`` xywh + probabilities, or ``(B, K, 6)``."""
        h, w = check_batch(batch, self.stride)
        if not self.dynamic and [h, w] != list(self.metadata["imgsz"]):
            raise ConfigError(f"this ONNX model takes a fixed {tuple(self.metadata['imgsz'])} input, got "
                              f"{(h, w)}: pass that imgsz or export with dynamic=True")
        array = np.ascontiguousarray(batch.detach().to("cpu", torch.float32).numpy())
        output = self.session.run(None, {INPUT_NAME: array})[0]
        return torch.from_numpy(np.asarray(output, dtype=np.float32))

    def __repr__(self) -> str:
        return (f"OnnxRuntimeBackend(threads={self.num_threads}, stride={self.stride}, dynamic={self.dynamic}, "
                f"end2end={self.end2end}, nms_free={self.nms_free})")
