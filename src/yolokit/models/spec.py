"""Model specs: the layer table of a network as plain data (no torch here).

A spec is the dict the reference implementation keeps in its YAML files and embeds in every checkpoint::

    nc: 80                       # class count
    end2end: True                # optional: YOLO26 one-to-one head
    reg_max: 1                   # optional: DFL bins (default 16)
    scales: {n: [depth, width, max_channels], ...}
    backbone: [[from, repeats, module, args], ...]
    head:     [[from, repeats, module, args], ...]

:func:`load_spec` adds ``scale`` (the resolved scale letter) and ``yaml_file`` (the file name the spec came from).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from yolokit.errors import SpecError
from yolokit.models.spec_limits import MAX_CLASSES, check_spec_limits
from yolokit.utils.yaml_safe import safe_load

__all__ = [
    "KNOWN_MODULES",
    "MAX_CLASSES",
    "canonical_module_name",
    "guess_scale",
    "load_spec",
    "model_display_name",
    "shipped_specs",
    "spec_rows",
    "validate_spec",
]

#: Layer types a spec row may name (``nn.Upsample`` / ``torch.nn.Upsample`` are accepted for ``Upsample``).
KNOWN_MODULES: tuple[str, ...] = (
    "Conv", "DWConv", "Bottleneck", "C2f", "C3k", "C3k2", "SPPF", "C2PSA", "Concat", "Upsample", "Detect",
    "Classify", "C3", "SPP", "Focus", "BottleneckCSP",  # the last four: YOLOv5 specs (models/yolov5.py)
)
_TORCH_NN_MODULES = {"Upsample"}
_SCALE_RE = re.compile(r"yolo(e-)?v?\d+([nslmx])")
_NAME_RE = re.compile(r"^(yolo(?:e-)?v?\d+)([nslmx])(.*)$")
_TOP_KEYS = ("nc", "scales", "backbone", "head")


def shipped_specs() -> list[str]:
    """Family names of the specs shipped with yolokit, e.g. ``["yolo11", "yolo26", "yolov8"]``."""
    folder = resources.files("yolokit.models") / "specs"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def guess_scale(name: str) -> str | None:
    """Scale letter in a model file name (``"yolo26n.yaml"`` -> ``"n"``), or None (``"yolo26-tiny.yaml"``)."""
    match = _SCALE_RE.search(Path(str(name)).stem)
    return match.group(2) if match else None


def canonical_module_name(name: Any) -> str | None:
    """``"nn.Upsample"``/``"torch.nn.Upsample"`` -> ``"Upsample"``; a known name unchanged; anything else None."""
    if not isinstance(name, str):
        return None
    for prefix in ("torch.nn.", "nn."):
        if name.startswith(prefix) and name[len(prefix):] in _TORCH_NN_MODULES:
            return name[len(prefix):]
    return name if name in KNOWN_MODULES else None


def spec_rows(spec: Mapping[str, Any]) -> list[Any]:
    """All layer rows, backbone first then head; the list index is the layer index."""
    return list(spec.get("backbone") or []) + list(spec.get("head") or [])


def load_spec(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Read and validate a spec.

    Args:
        source: a shipped model name (``"yolo26n.yaml"``, ``"yolo26n"``, ``"yolov8s.yaml"``), a path to a YAML
            file, or a dict (e.g. the spec embedded in a checkpoint, which may carry ``scale``/``yaml_file``).

    Returns:
        A new dict with the reference keys plus ``scale`` (str or None when the spec has no ``scales``) and
        ``yaml_file``.

    Raises:
        SpecError: unreadable source, unknown scale or an invalid layer row (the message names the layer index).
    """
    if isinstance(source, Mapping):
        spec = copy.deepcopy(dict(source))
        name = str(spec.get("yaml_file") or "")
        explicit = spec.get("scale")
    else:
        spec, name = _read_source(source)
        explicit = None
    spec["yaml_file"] = name
    spec["scale"] = _resolve_scale(spec, name, explicit)
    validate_spec(spec)
    return spec


def _read_source(source: str | Path) -> tuple[dict[str, Any], str]:
    path = Path(source)
    if path.is_file():
        return _read_yaml(path), str(source)
    text = str(source)
    stem = text[:-5] if text.endswith(".yaml") else text[:-4] if text.endswith(".yml") else text
    match = _NAME_RE.match(stem)
    family = match.group(1) + match.group(3) if match else stem
    shipped = shipped_specs()
    if "/" in stem or "\\" in stem or family not in shipped:
        raise SpecError(
            f"model spec {text!r} not found: expected an existing YAML path or a shipped name like 'yolo26n.yaml' "
            f"(families: {', '.join(shipped)}; scales n/s/m/l/x)"
        )
    folder = resources.files("yolokit.models") / "specs"
    spec = _parse_yaml_text((folder / f"{family}.yaml").read_text(encoding="utf-8"), f"{family}.yaml")
    return spec, f"{stem}.yaml"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read model spec {str(path)!r}: {exc}; expected a UTF-8 YAML file") from exc
    return _parse_yaml_text(text, str(path))


def _parse_yaml_text(text: str, where: str) -> dict[str, Any]:
    try:
        data = safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SpecError(f"model spec {where!r} is not valid YAML ({first}); fix the file") from exc
    if not isinstance(data, dict):
        raise SpecError(f"model spec {where!r}: expected a mapping with keys {_TOP_KEYS}, found {type(data).__name__}")
    return data


def _resolve_scale(spec: dict[str, Any], name: str, explicit: Any) -> str | None:
    scales = spec.get("scales")
    if not scales:
        return None
    if not isinstance(scales, Mapping):
        raise SpecError(f"spec 'scales': expected a mapping like {{n: [0.5, 0.25, 1024]}}, found {scales!r}")
    valid = ", ".join(map(str, scales))
    scale = guess_scale(name) if name else None
    if scale is None and explicit:
        scale = str(explicit)
    if scale is None and len(scales) == 1:
        scale = str(next(iter(scales)))
    if scale is None:
        raise SpecError(f"cannot tell the model scale of {name or 'this spec'!r}: name it like 'yolo11n.yaml' "
                        f"or set 'scale' to one of: {valid}")
    if scale not in scales:
        raise SpecError(f"unknown model scale {scale!r} for {name or 'this spec'!r}: valid scales are {valid}")
    return scale


def validate_spec(spec: Mapping[str, Any]) -> None:
    """Check the top-level keys and every row ``[from, repeats, module, args]``.

    Raises:
        SpecError: naming the layer index for a wrong row length, a bad ``from`` (forward reference or out of
            range), ``repeats < 1``, an unknown module type or non-list args, or a value outside the bounds of
            :mod:`yolokit.models.spec_limits` (widths, repeats, kernels, strides, upsample factors, Concat axis,
            class count, estimated parameter count).
    """
    if not isinstance(spec, Mapping):
        raise SpecError(f"model spec: expected a mapping, found {type(spec).__name__}")
    for key in ("backbone", "head"):
        if not isinstance(spec.get(key), list):
            raise SpecError(f"model spec: expected '{key}' to be a list of layer rows, found {spec.get(key)!r}")
    nc = spec.get("nc")
    if not isinstance(nc, int) or isinstance(nc, bool) or nc < 1:
        raise SpecError(f"model spec: expected 'nc' to be a positive class count, found {nc!r}")
    _validate_scales(spec)
    rows = spec_rows(spec)
    if not rows:
        raise SpecError("model spec: expected at least one layer row in 'backbone'/'head', found none")
    for i, row in enumerate(rows):
        _validate_row(i, row)
    check_spec_limits(spec, rows, canonical_module_name)


def _validate_scales(spec: Mapping[str, Any]) -> None:
    scales = spec.get("scales")
    if not scales:
        return
    if not isinstance(scales, Mapping):
        raise SpecError(f"spec 'scales': expected a mapping like {{n: [0.5, 0.25, 1024]}}, found {scales!r}")
    for key, value in scales.items():
        ok = isinstance(value, (list, tuple)) and len(value) == 3
        ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value)
        if not ok:
            raise SpecError(f"spec scale {key!r}: expected [depth, width, max_channels] > 0, found {value!r}")
    scale = spec.get("scale")
    if scale and scale not in scales:  # '' or None: not resolved yet (checkpoints store '' when unknown)
        raise SpecError(f"unknown model scale {scale!r}: valid scales are {', '.join(map(str, scales))}")


def _validate_row(i: int, row: Any) -> None:
    if not isinstance(row, (list, tuple)) or len(row) != 4:
        raise SpecError(f"layer {i}: expected a row [from, repeats, module, args], found {row!r}")
    source, repeats, module, args = row
    sources = source if isinstance(source, (list, tuple)) else [source]
    if not sources:
        raise SpecError(f"layer {i}: expected 'from' to be a layer index or a list of them, found []")
    for j in sources:
        if not isinstance(j, int) or isinstance(j, bool):
            raise SpecError(f"layer {i}: expected 'from' to be int layer indices, found {source!r}")
        if j >= i or (j < 0 and j != -1 and i + j < 0):
            raise SpecError(f"layer {i}: 'from' index {j} is out of range: use -1..-{i} or an earlier index 0..{i - 1}"
                            if i else f"layer 0: 'from' must be -1 (the input image), found {j}")
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise SpecError(f"layer {i}: expected 'repeats' to be an int >= 1, found {repeats!r}")
    if canonical_module_name(module) is None:
        raise SpecError(f"layer {i}: unknown module type {module!r}; known types: "
                        f"{', '.join('nn.Upsample' if m == 'Upsample' else m for m in KNOWN_MODULES)}")
    if not isinstance(args, list):
        raise SpecError(f"layer {i}: expected 'args' to be a list, found {args!r}")


def model_display_name(spec: Mapping[str, Any]) -> str:
    """Display name from the spec's ``yaml_file`` stem: ``"yolo26n.yaml"`` -> ``"YOLO26n"``; ``"Model"`` if unknown."""
    name = str(spec.get("yaml_file") or "")
    return Path(name).stem.replace("yolo", "YOLO") if name else "Model"
