"""On-disk cache of the ONNX graphs that the ONNX Runtime engine exports from in-memory models.

Exporting a model to ONNX takes about a second for an n-scale model (more for larger ones), which would be paid at
every start of a process that predicts with ``engine='auto'`` on the CPU. The graph is therefore kept in
``$YOLOKIT_CACHE_DIR/onnx`` (default ``~/.cache/yolokit/onnx``) under a key that covers everything the graph depends
on: every tensor of the fused model (names, dtypes, shapes and bytes), the export settings and metadata (input
size, dynamic axes, head, names, stride, spec), the torch / onnx versions and a digest of yolokit's own source
files (so an upgrade, or an edit of a development install, never reuses a graph traced by other code). Changed
weights give a new key; nothing is ever reused across different weights.

Files are written atomically, by the main rank only (other ranks export in memory); reading touches the file, and
only the :data:`MAX_FILES` most recently used graphs are kept. A cache that cannot be written (read-only home,
full disk) costs a warning and the export time, never the prediction.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from yolokit.export.onnx import _export_shape, _metadata, export_onnx
from yolokit.utils.dist import is_main_process
from yolokit.utils.io import atomic_write_bytes, cache_root

__all__ = ["graph_cache_dir", "graph_key", "code_digest", "cached_graph", "MAX_FILES"]

MAX_FILES = 16

logger = logging.getLogger(__name__)


def graph_cache_dir() -> Path:
    """``$YOLOKIT_CACHE_DIR/onnx`` (default ``~/.cache/yolokit/onnx``)."""
    return cache_root() / "onnx"


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """Digest of every ``.py`` file of the installed yolokit package (read once per process, a few ms)."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.blake2b(digest_size=16)
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def graph_key(model: Any, imgsz: int | Sequence[int], dynamic: bool, nms_free: bool) -> str:
    """Hex digest identifying the graph ``export_onnx(model, imgsz=, dynamic=, nms_free=)`` would produce."""
    import onnx
    import torch

    stride = int(max(float(s) for s in model.stride))
    header = {"metadata": _metadata(model, _export_shape(imgsz, stride), dynamic, nms_free),
              "torch": torch.__version__, "onnx": onnx.__version__, "code": code_digest()}
    digest = hashlib.blake2b(json.dumps(header, sort_keys=True).encode(), digest_size=20)
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy() if tensor.numel() else b"")
    return digest.hexdigest()


def cached_graph(model: Any, imgsz: int | Sequence[int], dynamic: bool, nms_free: bool,
                 refresh: bool = False) -> tuple[bytes, Path | None]:
    """The ONNX bytes for ``model`` (an export-ready copy, see ``prepare_for_export``) from the cache or a new export.

    Returns ``(data, path)``; ``path`` is the cache file the bytes came from or went to (None when not cached).
    ``refresh=True`` ignores a cached file (used when the cached one would not load) and replaces it.
    """
    path = graph_cache_dir() / f"{graph_key(model, imgsz, dynamic, nms_free)}.onnx"
    if not refresh:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            pass
        except OSError as error:
            logger.warning("cannot read the cached ONNX graph %s (%s); exporting again", path, error.strerror)
        else:
            with contextlib.suppress(OSError):  # a read-only cache still serves its graphs
                os.utime(path)  # most recently used
            logger.debug("ONNX graph from the cache: %s", path)
            return data, path
    data = export_onnx(model, imgsz=imgsz, dynamic=dynamic, nms_free=nms_free)
    if not is_main_process():
        return data, None
    try:
        atomic_write_bytes(path, data)
    except OSError as error:
        logger.warning("cannot cache the exported ONNX graph in %s (%s); set YOLOKIT_CACHE_DIR to a writable folder "
                       "to skip the export next time", path.parent, error.strerror)
        return data, None
    _evict(path.parent, keep=MAX_FILES)
    return data, path


def _evict(folder: Path, keep: int) -> None:
    """Delete all but the ``keep`` most recently used ``.onnx`` files of ``folder`` (best effort)."""
    try:
        files = sorted(folder.glob("*.onnx"), key=lambda f: f.stat().st_mtime, reverse=True)
    except OSError:
        return
    for old in files[keep:]:
        with contextlib.suppress(OSError):
            old.unlink()
