"""``save_weights`` and ``convert_weights``: native ``.safetensors`` / ``.pt`` files with metadata.

The suffix of the destination picks the format. Writes are atomic and happen on the main process only. A model
wrapped by DDP / DataParallel or ``torch.compile`` is saved as the plain model it wraps: no ``module.`` or
``_orig_mod.`` in the stored names, metadata from the plain model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolokit.errors import WeightsError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["SAVE_SUFFIXES", "convert_weights", "save_weights"]
LOGGER = logging.getLogger(__name__)
SAVE_SUFFIXES = {".safetensors": "safetensors", ".pt": "yolokit-pt"}
# always from the model (the tensors must fit them) or fresh; never carried over from old metadata
_FROM_MODEL = {"task", "spec", "names", "stride", "format_version", "yolokit_version", "created"}


def save_weights(model: torch.nn.Module, path: str | Path, *, half: bool = False, metadata: dict | None = None) -> Path:
    """Save ``model``'s state_dict with metadata; the suffix picks the format (``.safetensors`` or ``.pt``).

    ``half=True`` stores floating tensors as fp16 (integer buffers unchanged). ``metadata`` adds or overrides
    keys (``imgsz``, ``parent_sha256``, ``provenance`` (merged), extra keys); ``task``, ``spec``, ``names`` and
    ``stride`` always come from the model. Returns ``Path(path)``.
    """
    from yolokit.utils.io import check_output_file
    from yolokit.weights.keys import strip_wrapper_prefixes, unwrap_model

    path = Path(path)
    _save_format(path)
    check_output_file(path, "weights file")
    plain = unwrap_model(model)
    state_dict = strip_wrapper_prefixes(plain.state_dict())
    return _write(path, state_dict, _merged_metadata(plain, metadata), half)


def convert_weights(src: str | Path, dst: str | Path, *, half: bool = False) -> Path:
    """Convert any readable weights file to ``.safetensors`` or native ``.pt`` (by ``dst``'s suffix).

    Names, spec, stride, imgsz, task and provenance are preserved; ``parent_sha256`` becomes the sha256 of ``src``
    and ``provenance["source_format"]`` its format. The tensors are checked against the model the spec describes
    before anything is written.
    """
    from yolokit.models.builder import build_model
    from yolokit.utils.io import check_output_file
    from yolokit.weights.metadata import build_metadata, normalize_metadata
    from yolokit.weights.native import check_fit
    from yolokit.weights.read import read_weights

    dst = Path(dst)
    _save_format(dst)
    check_output_file(dst, "converted weights file")  # before reading src
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


def _merged_metadata(model: torch.nn.Module, metadata: dict | None) -> dict[str, Any]:
    """Fresh metadata from the model, carrying over the model's lineage and then the caller's keys.

    ``task``, ``spec``, ``names`` and ``stride`` always come from the model (the tensors must fit them);
    ``format_version``, ``yolokit_version`` and ``created`` are always fresh. Other keys (``imgsz``,
    ``parent_sha256``, ``provenance``, extra keys) come from ``model.metadata`` and are overridden by ``metadata``;
    ``provenance`` dicts are merged.
    """
    from yolokit.weights.metadata import build_metadata, normalize_metadata

    carried = {k: v for k, v in (getattr(model, "metadata", None) or {}).items() if k not in _FROM_MODEL}
    given = {k: v for k, v in (metadata or {}).items() if k not in _FROM_MODEL}
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
