"""What a weights file is, for the registry: ``describe_file(path) -> FileInfo`` (format, precision, classes...).

Only real weights files pass, detected by content through the weights package: native ``.safetensors`` / ``.pt``
and reference ``.pt`` (read with the restricted importer: nothing is unpickled here) with yolokit metadata, and
ONNX files written by yolokit's export (``metadata_props`` with ``names`` and ``spec``), INT8 included. Anything
else is a one-line ``RegistryError``.

Precision: PyTorch files by the dtype holding most floating elements (``fp32``, ``fp16``, ``bf16``; a reference
checkpoint by its stored dtypes as ``inspect_weights`` reports them, since the importer converts to fp32); ONNX files
``int8`` when a weight matrix is stored as int8/uint8 (QDQ or QOperator), else by their initializers' dtype.
Metrics, train args and the dataset fingerprint come from the weights' provenance (written by the trainer).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

from yolokit.errors import RegistryError, WeightsError

__all__ = ["FileInfo", "describe_file", "jsonable_metadata"]

_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked", ".anchors")  # anchors: YOLOv5 head


@dataclasses.dataclass
class FileInfo:
    """The registry's description of one weights file (``names`` with int keys; ``metadata`` JSON-able)."""

    path: Path
    sha256: str
    format: str
    precision: str
    task: str | None
    architecture: str | None
    scale: str | None
    names: dict[int, str]
    parameters: int | None
    file_size: int
    metrics: dict[str, Any]
    dataset_fingerprint: str | None
    train_args: dict[str, Any]
    metadata: dict[str, Any]
    parent_sha256: str | None


def describe_file(path: str | Path) -> FileInfo:
    """Describe the weights file at ``path`` (see the module docstring); ``RegistryError`` for anything else."""
    from yolokit.weights import detect_format

    path = Path(path)
    try:
        fmt = detect_format(path)
        return _describe_onnx(path) if fmt == "onnx" else _describe_torch(path)
    except WeightsError as err:
        raise RegistryError(f"cannot register {path}: {err}") from None


def _architecture(spec: Any) -> tuple[str | None, str | None]:
    from yolokit.weights.inspect import architecture

    if not isinstance(spec, dict):
        return None, None
    arch = architecture(spec)
    return arch["name"], arch["scale"]


def jsonable_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """Weights metadata as stored in the database: JSON types, ``names`` keys as strings, tensors dropped."""
    import json

    out = {k: v for k, v in meta.items() if k != "names"}
    out["names"] = {str(k): str(v) for k, v in (meta.get("names") or {}).items()}
    return json.loads(json.dumps(out, default=str))


def _provenance_fields(meta: dict[str, Any]) -> dict[str, Any]:
    provenance = meta.get("provenance") or {}
    return {"metrics": dict(provenance.get("metrics") or {}),
            "dataset_fingerprint": provenance.get("dataset_fingerprint"),
            "train_args": dict(provenance.get("train_args") or {})}


def _describe_torch(path: Path) -> FileInfo:
    from yolokit.weights import read_weights

    weights = read_weights(path)  # safetensors, yolokit .pt, or a reference .pt through the restricted importer
    meta = weights.metadata
    if not meta or not isinstance(meta.get("spec"), dict):
        raise RegistryError(f"cannot register {path}: the file has no yolokit metadata (architecture spec and "
                            "class names); convert it with 'yolokit convert' or save it with yolokit.save_weights")
    from yolokit.registry.onnx_weights import float_precision

    counts: dict[str, int] = {}
    for tensor in weights.state_dict.values():
        counts[str(tensor.dtype)] = counts.get(str(tensor.dtype), 0) + tensor.numel()
    if weights.format in ("ultralytics-pt", "yolov5-pt"):  # the importers hand out fp32 copies: the stored dtypes
        from yolokit.weights.inspect import inspect_weights  # (tensor counts) come from the safe inspector

        counts = dict(inspect_weights(path)["dtypes"])

    arch, scale = _architecture(meta["spec"])
    params = sum(t.numel() for k, t in weights.state_dict.items() if not k.endswith(_BUFFER_SUFFIXES))
    return FileInfo(path=path, sha256=weights.sha256, format=weights.format, precision=float_precision(counts),
                    task=meta.get("task"), architecture=arch, scale=scale, names=dict(meta.get("names") or {}),
                    parameters=int(params), file_size=path.stat().st_size, metadata=jsonable_metadata(meta),
                    parent_sha256=meta.get("parent_sha256"), **_provenance_fields(meta))


def _describe_onnx(path: Path) -> FileInfo:
    from yolokit.export.onnx import decode_metadata, require
    from yolokit.registry.onnx_weights import node_weights, parameter_count, precision_of

    onnx = require("onnx")
    data = path.read_bytes()
    try:
        model = onnx.load_from_string(data)
    except Exception as err:  # noqa: BLE001 - onnx raises many types for a damaged protobuf
        raise RegistryError(f"cannot register {path}: the ONNX graph does not parse ({type(err).__name__})") from None
    meta = decode_metadata({p.key: p.value for p in model.metadata_props})
    if not isinstance(meta.get("names"), dict) or not isinstance(meta.get("spec"), dict):
        raise RegistryError(f"cannot register {path}: an ONNX file without yolokit metadata (names, spec in "
                            "metadata_props); register ONNX files written by yolokit's export")
    weights = node_weights(model)
    arch, scale = _architecture(meta["spec"])
    return FileInfo(path=path, sha256=hashlib.sha256(data).hexdigest(), format="onnx",
                    precision=precision_of(weights), task=meta.get("task"), architecture=arch, scale=scale,
                    names={int(k): str(v) for k, v in meta["names"].items()}, parameters=parameter_count(weights),
                    file_size=len(data), metadata=jsonable_metadata(meta), parent_sha256=meta.get("parent_sha256"),
                    **_provenance_fields(meta))
