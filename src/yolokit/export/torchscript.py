"""TorchScript export: a traced, frozen ``torch.jit`` module with yolokit's metadata inside the file.

``export_torchscript(model, f, imgsz=, nms_free=)`` traces the fused fp32 inference copy
(:func:`yolokit.export.onnx.prepare_for_export`) on a ``(1, 3, H, W)`` input, freezes it, and saves it with an extra
file ``yolokit.json`` (the same keys as the ONNX metadata: ``task``, ``names``, ``stride``, ``imgsz``, ``dynamic``,
``nms_free``, ``end2end``, ``max_det``, ``spec``, ``yolokit_version``, plus what the caller adds). The module maps
``(B, 3, H, W)`` float32 RGB in [0, 1] to the head's output, as the PyTorch model in eval mode does. The one-to-many
head traces its anchor grid from the input's shape, so any multiple of the stride works (``dynamic=True``); the
YOLO26 NMS-free head's top-k size is fixed by the traced shape (``dynamic=False``).

A TorchScript file is a program (TorchScript code, not Python) that runs when it is loaded: :func:`load_torchscript`
loads only files yolokit exported here (their sha256 recorded when written, ``export.torchscript_trust``) or files
passed with ``trusted=True``, after checking the archive. :func:`is_torchscript` recognises one by content (a zip
archive with ``constants.pkl`` and a ``code/`` folder), never by name.
"""

from __future__ import annotations

import io
import json
import logging
import os
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from yolokit.errors import ExportError, UntrustedCodeError, WeightsError

__all__ = ["export_torchscript", "is_torchscript", "read_torchscript_metadata", "load_torchscript", "EXTRA_FILE"]

EXTRA_FILE = "yolokit.json"
MAX_FILE_BYTES = 8 * 2**30  # a TorchScript file larger than this is not read

logger = logging.getLogger(__name__)


def _metadata(model: Any, shape_hw: tuple[int, int], nms_free: bool) -> dict[str, Any]:
    import yolokit

    stride = [int(s) if float(s).is_integer() else float(s) for s in model.stride.tolist()]
    return {"yolokit_version": yolokit.__version__, "format": "torchscript", "task": model.task,
            "names": {str(int(k)): str(v) for k, v in dict(model.names).items()}, "stride": stride,
            "imgsz": list(shape_hw), "dynamic": not nms_free, "nms_free": bool(nms_free),
            "end2end": bool(model.end2end), "max_det": int(model.head.max_det), "spec": model.spec}


def export_torchscript(model: Any, f: str | Path | None = None, *, imgsz: int | Sequence[int] = 640,
                       nms_free: bool = False, metadata: dict[str, Any] | None = None) -> bytes | Path:
    """Trace ``model`` (a ``DetectionModel``; not changed) to TorchScript -> the bytes, or the written ``Path``.

    ``metadata`` entries are added to (and override) the file's ``yolokit.json``. The file is written atomically by
    the main process only.
    """
    import torch

    from yolokit.export.onnx import _export_shape, prepare_for_export

    if f is not None:
        from yolokit.utils.io import check_output_file

        check_output_file(f, "TorchScript file")  # before tracing
    prepared = prepare_for_export(model, nms_free)
    shape_hw = _export_shape(imgsz, int(max(float(s) for s in prepared.stride)))
    dummy = torch.zeros(1, 3, *shape_hw)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python values
            traced = torch.jit.freeze(torch.jit.trace(prepared, dummy, check_trace=False).eval())
    except Exception as error:  # noqa: BLE001 - the tracer raises many types; one line
        raise ExportError(f"TorchScript trace failed: {type(error).__name__}: {str(error).splitlines()[0]}; "
                          "export format=onnx instead") from error
    extra = {**_metadata(prepared, shape_hw, nms_free), **(metadata or {})}
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer, _extra_files={EXTRA_FILE: json.dumps(extra, default=str)})
    data = buffer.getvalue()
    from yolokit.export.torchscript_trust import record_trusted

    if f is None:
        record_trusted(data, persist=False)  # bytes made here: trusted in this process (the caller may write them)
        return data
    from yolokit.utils.dist import is_main_process
    from yolokit.utils.io import atomic_write_bytes

    path = Path(f)
    if is_main_process():
        atomic_write_bytes(path, data)
        record_trusted(data, path)  # yolokit's own export: loads later without trusted=True
        logger.info("TorchScript model saved to %s (%.1f MB)", path, len(data) / 1e6)
    return path


def is_torchscript(path: str | Path) -> bool:
    """True for a TorchScript archive (a zip with ``<root>/constants.pkl`` and ``<root>/code/``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    roots = {name.split("/", 1)[0] for name in names if name.endswith("/constants.pkl")}
    return any(name.startswith(f"{root}/code/") for root in roots for name in names)


def load_torchscript(source: str | Path | bytes, device: str = "cpu", *,
                     trusted: bool = False) -> tuple[Any, dict[str, Any]]:
    """(module, metadata) of a TorchScript file written by :func:`export_torchscript` (``names`` keys as ints).

    A TorchScript file carries code that runs when it is loaded (``export.torchscript_trust``): it is loaded only
    when yolokit exported it here (its sha256 recorded) or ``trusted=True``. The bytes are read once, hashed, checked
    as an archive (``weights._torchscript_archive``: member names and sizes, constants read by the restricted
    unpickler) and only then given to ``torch.jit.load``.

    Raises:
        UntrustedCodeError: not recorded as yolokit's own and ``trusted`` not set; nothing was executed.
        WeightsError: an archive over the bounds or malformed (``UnsafeWeightsError``: a refused pickle global).
        ExportError: unreadable by torch, or without yolokit's ``yolokit.json``.
    """
    import torch

    from yolokit.export.onnx import decode_metadata
    from yolokit.export.torchscript_trust import is_trusted
    from yolokit.weights._torchscript_archive import verify_torchscript

    name, data = _read_source(source)
    if not trusted and not is_trusted(data):
        raise UntrustedCodeError(f"{name}: a TorchScript file carries code that runs when it is loaded, and this one "
                                 "was not exported by yolokit here; nothing was executed: load it only if you trust "
                                 "its source, with YOLO(path, trusted=True) or the CLI key trusted=True (or use its "
                                 ".onnx / .safetensors export)")  # fmt: skip
    verify_torchscript(name, io.BytesIO(data))
    extra = {EXTRA_FILE: ""}
    try:
        module = torch.jit.load(io.BytesIO(data), map_location=device, _extra_files=extra)
    except Exception as error:  # noqa: BLE001 - torch raises RuntimeError and friends for bad archives
        raise ExportError(f"cannot load TorchScript model {name} ({str(error).splitlines()[0]}): pass a file "
                          "written by yolokit's export format=torchscript") from None  # fmt: skip
    if not extra[EXTRA_FILE]:
        raise ExportError(f"TorchScript model {name} has no yolokit metadata (yolokit.json): export it with "
                          "yolokit's format=torchscript")  # fmt: skip
    from yolokit.weights._native_read import loads_json

    raw = loads_json(extra[EXTRA_FILE], EXTRA_FILE, Path(name))  # one line for bad / over-deep JSON
    if not isinstance(raw, dict):
        raise ExportError(f"TorchScript model {name}: {EXTRA_FILE} is not a JSON object; re-export the model")
    return module.eval(), decode_metadata({k: json.dumps(v) for k, v in raw.items()})


def _read_source(source: str | Path | bytes) -> tuple[str, bytes]:
    """(name for messages, the whole file's bytes), read once; the size is checked before reading."""
    from yolokit.weights._foreign_archive import available_memory

    if isinstance(source, bytes):
        return "<TorchScript bytes>", source
    path = Path(source)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > min(MAX_FILE_BYTES, available_memory()):
                raise WeightsError(f"{path}: a {size}-byte TorchScript file is larger than yolokit loads (at most "
                                   f"{MAX_FILE_BYTES} bytes and the memory this process may allocate)")  # fmt: skip
            return str(path), handle.read()
    except OSError as err:  # missing, a folder, PermissionError, EIO
        raise WeightsError(f"{path}: cannot read the TorchScript file ({err.strerror or err}); check the "
                           "path") from None  # fmt: skip


def read_torchscript_metadata(source: str | Path | bytes) -> dict[str, Any]:
    """The ``yolokit.json`` metadata of a TorchScript file (read from the zip, the module is not loaded)."""
    from yolokit.export.onnx import decode_metadata

    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as archive:
            raw = _read_extra(archive)
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise ExportError(f"cannot read the TorchScript file {source if not isinstance(source, bytes) else ''} "
                          f"({type(error).__name__}: {error}); pass a file written by yolokit's export "
                          "format=torchscript") from None  # fmt: skip
    if not isinstance(raw, dict):
        raise ExportError(f"TorchScript model metadata {EXTRA_FILE} is not a JSON object: re-export the model")
    return decode_metadata({k: json.dumps(v) for k, v in raw.items()})


def _read_extra(archive: zipfile.ZipFile) -> Any:
    """The decoded ``yolokit.json`` of an open TorchScript archive (its declared size checked before reading)."""
    name = next((n for n in archive.namelist() if n.endswith(f"/extra/{EXTRA_FILE}")), None)
    if name is None:
        raise ExportError("TorchScript model has no yolokit metadata (yolokit.json): export it with yolokit's "
                          "format=torchscript")
    if archive.getinfo(name).file_size > 16 * 2**20:  # checked before reading: the size is only declared
        raise ExportError(f"TorchScript model metadata {name} declares {archive.getinfo(name).file_size} bytes; "
                          "expected a small yolokit.json: re-export the model")  # fmt: skip
    try:
        return json.loads(archive.read(name))
    except (ValueError, RecursionError) as error:
        raise ExportError(f"TorchScript model metadata is not valid JSON ({type(error).__name__}): re-export "
                          "the model") from None  # fmt: skip
