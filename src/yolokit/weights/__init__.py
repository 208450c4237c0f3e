"""Weights files: detect, read, load, transfer, save and convert.

    fmt = detect_format("best.pt")              # "safetensors" | "yolokit-pt" | "ultralytics-pt" | "onnx"
    wf = read_weights("yolo11n.pt")             # WeightsFile(state_dict, metadata, format, sha256, path)
    model = load_weights("yolo11n.safetensors") # DetectionModel built from the embedded spec, eval mode
    report = load_weights(model, "other.pt")    # TransferReport: tensors copied by name and shape
    save_weights(model, "best.safetensors", half=True)
    convert_weights("yolo11n.pt", "yolo11n.safetensors")

The format is always detected from the file's content, never from its name. dtypes: ``read_weights`` returns the
tensors in their **stored** dtype (fp16 stays fp16, so round trips are bit-exact and testable); ``load_weights``
copies them into a model whose parameters are fp32. Importing this package does not import torch; the functions do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolokit.errors import UnsafeWeightsError, WeightsError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from yolokit.models.detector import DetectionModel

__all__ = [
    "FORMATS",
    "TransferReport",
    "WeightsFile",
    "convert_weights",
    "detect_format",
    "load_weights",
    "read_weights",
    "save_weights",
]

LOGGER = logging.getLogger(__name__)
FORMATS = ("safetensors", "yolokit-pt", "ultralytics-pt", "onnx")
SAVE_SUFFIXES = {".safetensors": "safetensors", ".pt": "yolokit-pt"}
_SUPPORTED = "safetensors, yolokit .pt, Ultralytics .pt (read-only) or ONNX (detected, loads via YOLO())"
_ONNX_MESSAGE = (
    "is an ONNX model: load_weights reads PyTorch weights only; predict or validate with YOLO(path), or load "
    "the .safetensors or .pt file it was exported from"
)
# globals a native .pt pickle may reference: torch's tensor rebuild + storage types, and OrderedDict
_NATIVE_PICKLE_MODULES = {"torch", "torch._utils", "collections"}


@dataclass
class WeightsFile:
    """A weights file read into memory: tensors in their stored dtype and metadata with int ``names`` keys."""

    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, Any]
    format: str
    sha256: str
    path: Path


@dataclass
class TransferReport:
    """Result of ``load_weights(model, path)``: ``transferred`` of the model's ``total`` tensors were copied;
    ``skipped`` lists the model tensors left as they were (absent from the file or of a different shape)."""

    transferred: int
    total: int
    skipped: list[str] = field(default_factory=list)


def _unknown(path: Path, found: str) -> WeightsError:
    return WeightsError(f"{path}: unrecognised weights file ({found}); supported formats: {_SUPPORTED}")


def _is_native_global(ref: Any) -> bool:
    module, name = ref.module, ref.name
    if module == "collections":
        return name == "OrderedDict"
    if module == "torch._utils":
        return name.startswith("_rebuild_")
    return module == "torch" and name.endswith("Storage")


def _detect_torch_archive(path: Path) -> str:
    """Tell a native ``.pt`` from a reference (Ultralytics) one by the globals its pickle references."""
    import zipfile

    from yolokit.weights import foreign, native

    try:
        refs = foreign.scan_globals(path)
        has_marker = native.pickle_has_marker(path)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise WeightsError(f"{path}: corrupt or truncated torch archive ({exc}); re-download or re-save it") from exc
    if any(ref.module.split(".")[0] == "ultralytics" for ref in refs):
        return "ultralytics-pt"
    foreign_refs = [f"{ref.module}.{ref.name}" for ref in refs if not _is_native_global(ref)]
    if foreign_refs:
        raise UnsafeWeightsError(
            f"{path}: torch pickle references {', '.join(foreign_refs[:5])}, which is neither a yolokit nor an "
            "Ultralytics checkpoint; nothing was executed; only load files from sources you trust"
        )
    if not has_marker:
        raise _unknown(path, "a plain torch pickle without yolokit metadata; save weights with yolokit.save_weights")
    return "yolokit-pt"


def detect_format(path: str | Path) -> str:
    """Format of a weights file from its content: ``"safetensors"``, ``"yolokit-pt"``, ``"ultralytics-pt"`` or
    ``"onnx"``. Raises ``WeightsError`` (listing the supported formats) for a missing, empty or unknown file."""
    from yolokit.weights import native

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found; check the path (expected {_SUPPORTED})")
    size = path.stat().st_size
    if size == 0:
        raise _unknown(path, "the file is empty")
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head.startswith(native.ZIP_MAGIC):
        return _detect_torch_archive(path)
    if native.looks_like_safetensors(head):
        return "safetensors"
    if native.looks_like_onnx(path, size):
        return "onnx"
    if head[:1] == b"\x80":
        raise _unknown(path, "a legacy non-zip torch pickle, which yolokit does not read")
    raise _unknown(path, f"first bytes {head[:8].hex(' ')}")


def read_weights(path: str | Path) -> WeightsFile:
    """Read any supported weights file (ONNX excepted) -> ``WeightsFile``; tensors keep their stored dtype.

    ``metadata`` is normalized (``names`` with int keys). A safetensors file without yolokit metadata gives
    ``metadata == {}`` (its tensors can still be transferred with ``load_weights(model, path)``).
    """
    from yolokit.utils.io import sha256_file
    from yolokit.weights import native
    from yolokit.weights.metadata import normalize_metadata

    path = Path(path)
    fmt = detect_format(path)
    if fmt == "onnx":
        raise WeightsError(f"{path} {_ONNX_MESSAGE}")
    sha256 = sha256_file(path)
    if fmt == "safetensors":
        state_dict, raw = native.read_safetensors(path)
    elif fmt == "yolokit-pt":
        state_dict, raw = native.read_native_pt(path)
    else:
        from yolokit.weights.foreign import read_ultralytics

        state_dict, raw = read_ultralytics(path, sha256)
    metadata = {} if raw is None else normalize_metadata(raw, source=str(path))
    return WeightsFile(state_dict=state_dict, metadata=metadata, format=fmt, sha256=sha256, path=path)


def _build_from_file(weights: WeightsFile) -> DetectionModel:
    """Build the model described by the file's metadata and load its tensors (strict)."""
    from yolokit.models.builder import build_model
    from yolokit.weights.native import check_fit

    if not weights.metadata:
        raise WeightsError(
            f"{weights.path}: the file has no yolokit metadata (architecture spec and class names), so no model can "
            "be built from it; build the model first and transfer with load_weights(model, path)"
        )
    names = weights.metadata["names"]
    model = build_model(weights.metadata["spec"], num_classes=len(names))
    check_fit(weights.path, model.state_dict(), weights.state_dict, strict=True)
    model.load_state_dict(weights.state_dict, strict=True)
    model.names = dict(names)
    model.metadata = weights.metadata
    return model.eval()


def _transfer(model: torch.nn.Module, path: str | Path, strict: bool) -> TransferReport:
    """Copy the tensors of ``path`` whose name and shape match ``model``'s state_dict."""
    from yolokit.weights.native import check_fit

    weights = read_weights(path)
    target = model.state_dict()
    if strict:
        check_fit(weights.path, target, weights.state_dict, strict=True)
    matched = {k: v for k, v in weights.state_dict.items() if k in target and tuple(v.shape) == tuple(target[k].shape)}
    model.load_state_dict(matched, strict=False)
    skipped = [k for k in target if k not in matched]
    LOGGER.info("Transferred %d/%d tensors from %s", len(matched), len(target), weights.path)
    if skipped:
        LOGGER.info("Skipped %d tensors (absent or of a different shape): %s", len(skipped), ", ".join(skipped))
    return TransferReport(transferred=len(matched), total=len(target), skipped=skipped)


def load_weights(
    model_or_path: str | Path | torch.nn.Module, path: str | Path | None = None, strict: bool = False
) -> DetectionModel | TransferReport:
    """Load weights into a new model, or transfer them into an existing one.

    - ``load_weights(path) -> DetectionModel``: built from the embedded spec with ``len(names)`` classes, all
      tensors loaded strictly (a mismatch raises ``WeightsError`` naming the keys and shapes), ``names`` set,
      ``model.metadata`` attached, eval mode, fp32 parameters.
    - ``load_weights(model, path, strict=False) -> TransferReport``: copies tensors matching by name AND shape,
      logs ``Transferred X/Y tensors from <file>`` and the skipped names. ``strict=True`` requires every model
      tensor present with its shape and no extra tensors, else raises the mismatch ``WeightsError``.
    """
    if path is None:
        if not isinstance(model_or_path, (str, Path)):
            raise WeightsError(
                f"load_weights expects a file path, or (model, path); found {type(model_or_path).__name__} alone"
            )
        return _build_from_file(read_weights(model_or_path))
    if isinstance(model_or_path, (str, Path)):
        raise WeightsError("load_weights(model, path): the first argument must be a model when a path is given")
    return _transfer(model_or_path, path, strict)


def _merged_metadata(model: torch.nn.Module, metadata: dict | None) -> dict[str, Any]:
    """Fresh metadata from the model, carrying over the model's lineage and then the caller's keys.

    ``spec``, ``names`` and ``stride`` always come from the model (the tensors must fit them); ``format_version``,
    ``yolokit_version`` and ``created`` are always fresh. Other keys (``imgsz``, ``parent_sha256``, ``provenance``,
    extra keys) come from ``model.metadata`` and are overridden by ``metadata``; ``provenance`` dicts are merged.
    """
    from yolokit.weights.metadata import build_metadata, normalize_metadata

    fixed = {"spec", "names", "stride", "format_version", "yolokit_version", "created"}
    carried = {k: v for k, v in (getattr(model, "metadata", None) or {}).items() if k not in fixed}
    given = {k: v for k, v in (metadata or {}).items() if k not in fixed}
    provenance = {**(carried.get("provenance") or {}), **(given.get("provenance") or {})}
    extra = {**carried, **given}
    meta = build_metadata(
        model, parent_sha256=extra.get("parent_sha256"), provenance=provenance, imgsz=extra.get("imgsz", 640)
    )
    for key, value in extra.items():
        if key not in ("provenance", "parent_sha256", "imgsz"):
            meta[key] = value
    return normalize_metadata(meta)


def _save_format(path: Path) -> str:
    fmt = SAVE_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise WeightsError(
            f"cannot save weights to {path}: unknown suffix '{path.suffix}'; use .safetensors (recommended) or .pt"
        )
    return fmt


def _write(path: Path, state_dict: dict, metadata: dict[str, Any], half: bool) -> Path:
    from yolokit.utils.dist import is_main_process
    from yolokit.weights import native

    fmt = _save_format(path)
    if not is_main_process():
        LOGGER.debug("not the main process: %s not written", path)
        return path
    writer = native.write_safetensors if fmt == "safetensors" else native.write_native_pt
    writer(path, state_dict, metadata, half=half)
    LOGGER.info("Saved %s weights (%s) to %s", fmt, "fp16" if half else "fp32", path)
    return path


def save_weights(model: torch.nn.Module, path: str | Path, *, half: bool = False, metadata: dict | None = None) -> Path:
    """Save ``model``'s state_dict with metadata; the suffix picks the format (``.safetensors`` or ``.pt``).

    ``half=True`` stores floating tensors as fp16 (integer buffers unchanged). The write is atomic and happens on
    the main process only. Returns ``Path(path)``.
    """
    path = Path(path)
    _save_format(path)
    return _write(path, model.state_dict(), _merged_metadata(model, metadata), half)


def convert_weights(src: str | Path, dst: str | Path, *, half: bool = False) -> Path:
    """Convert any readable weights file to ``.safetensors`` or native ``.pt`` (by ``dst``'s suffix).

    Names, spec, stride, imgsz and provenance are preserved; ``parent_sha256`` becomes the sha256 of ``src`` and
    ``provenance["source_format"]`` its format. The tensors are checked against the model the spec describes
    before anything is written.
    """
    from yolokit.models.builder import build_model
    from yolokit.weights.metadata import build_metadata, normalize_metadata
    from yolokit.weights.native import check_fit

    dst = Path(dst)
    _save_format(dst)
    weights = read_weights(src)
    if not weights.metadata:
        raise WeightsError(f"{weights.path}: no yolokit metadata (spec, names) to convert; load it into a model")
    meta = weights.metadata
    model = build_model(meta["spec"], num_classes=len(meta["names"]))
    check_fit(weights.path, model.state_dict(), weights.state_dict, strict=True)
    model.names = dict(meta["names"])
    provenance = {**meta.get("provenance", {}), "source_format": weights.format}
    new_meta = build_metadata(model, parent_sha256=weights.sha256, provenance=provenance, imgsz=meta["imgsz"])
    fixed = {"spec", "names", "stride", "format_version", "yolokit_version", "created", "parent_sha256", "provenance"}
    new_meta.update({k: v for k, v in meta.items() if k not in fixed})
    new_meta["spec"], new_meta["stride"] = meta["spec"], meta["stride"] or new_meta["stride"]
    return _write(dst, weights.state_dict, normalize_metadata(new_meta), half)
