"""Settings for each mode as frozen dataclasses, and strict ``key=value`` parsing.

An unknown key is an error that names the closest valid key; a value of the wrong type is an error that names the
key, the expected type and the value found. The Python API (``YOLO.predict(conf=0.5)``) and the CLI
(``yolokit predict conf=0.5``) go through the same :func:`make_config`, so both accept exactly the same keys.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

from yolokit.errors import ConfigError

C = TypeVar("C")

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


@dataclass(frozen=True)
class PredictConfig:
    """Inference settings (defaults follow the reference implementation's predict mode)."""

    conf: float = 0.25  # minimum confidence of a kept box
    iou: float = 0.7  # NMS IoU threshold
    imgsz: int | tuple[int, int] = 640  # inference size (square int, or (height, width))
    max_det: int = 300  # maximum boxes per image
    classes: tuple[int, ...] | None = None  # keep only these class ids
    agnostic_nms: bool = False  # class-agnostic NMS
    nms: bool = True  # YOLO26: False selects the NMS-free end-to-end head
    end2end: bool | None = None  # deprecated alias: end2end=True is nms=False
    batch: int = 1  # images per forward pass
    half: bool = False  # fp16 inference
    device: str = "cpu"
    engine: str = "auto"  # auto | eager | channels_last | jit (traced + frozen per shape) | onnxruntime (CPU)
    stream: bool = False  # return a generator (constant memory) instead of a list
    vid_stride: int = 1  # use every n-th video frame
    save: bool = False  # save annotated images/videos
    save_txt: bool = False  # save YOLO-format label files
    save_conf: bool = False  # add confidence to saved label rows
    save_crop: bool = False  # save each box as a crop in <run>/crops/<class name>/
    project: str = "runs"
    name: str = "predict"
    exist_ok: bool = False  # reuse the run directory instead of numbering a new one
    line_width: int | None = None
    show_labels: bool = True
    show_conf: bool = True
    verbose: bool = True


@dataclass(frozen=True)
class ValConfig:
    """Validation settings (defaults follow the reference implementation's val mode)."""

    data: str = ""  # dataset YAML (or COCO JSON) path
    split: str = "val"  # train / val / test
    imgsz: int = 640
    batch: int = 16
    conf: float = 0.001
    iou: float = 0.7
    max_det: int = 300
    nms: bool = True
    end2end: bool | None = None
    half: bool = False
    device: str = "cpu"
    engine: str = "auto"
    rect: bool = True  # rectangular (minimal padding) batches
    plots: bool = True
    save_json: bool = True
    project: str = "runs"
    name: str = "val"
    exist_ok: bool = False
    verbose: bool = True
    workers: int = 0


@dataclass(frozen=True)
class ExportConfig:
    """Export settings: ``format`` onnx | safetensors | pt."""

    format: str = "onnx"
    file: str = ""  # output path; default: beside the weights (or ./<model>.<ext>)
    imgsz: int = 640  # traced input size (ONNX); any multiple of the stride with dynamic=True
    dynamic: bool = True  # ONNX: dynamic batch/height/width
    nms: bool = True  # ONNX, YOLO26: False exports the NMS-free end-to-end head instead
    half: bool = False  # fp16 tensors (safetensors / pt)
    int8: bool = False  # INT8 quantization (not available yet)
    opset: int = 17


@dataclass(frozen=True)
class InfoConfig:
    """Model summary settings."""

    model: str = ""
    detailed: bool = False
    imgsz: int = 640
    verbose: bool = True


def config_keys(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def make_config(cls: type[C], overrides: dict[str, Any] | None = None, **kwargs: Any) -> C:
    """Build ``cls`` from ``overrides`` and ``kwargs``, validating every key and converting string values."""
    values = {**(overrides or {}), **kwargs}
    hints = typing.get_type_hints(cls)
    known = config_keys(cls)
    converted: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(unknown_key_message(key, known, cls.__name__.removesuffix("Config").lower()))
        converted[key] = convert_value(key, value, hints[key])
    return cls(**converted)


def unknown_key_message(key: str, known: list[str], mode: str) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(known)}"
    return f"unknown {mode} setting '{key}': {hint}"


def parse_key_values(args: list[str]) -> dict[str, str]:
    """Split CLI words ``key=value`` into a dict of strings; a word without '=' is an error."""
    out: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected key=value, found '{arg}': write settings as e.g. conf=0.5")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def convert_value(key: str, value: Any, hint: Any) -> Any:
    """Convert ``value`` to the annotated type ``hint`` (strings from the CLI included)."""
    try:
        return _convert(value, hint)
    except (ValueError, TypeError, SyntaxError):
        expected = str(hint).replace("typing.", "").replace("NoneType", "None")
        raise ConfigError(f"setting '{key}' expects {expected}, found {value!r}") from None


def _convert(value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            if type(None) in options:
                return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option)
            except (ValueError, TypeError, SyntaxError) as err:
                errors.append(err)
        raise ValueError(f"no option fits {value!r}")
    if origin is tuple:
        items = _as_sequence(value)
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(item, args[0]) for item in items)
        if len(items) != len(args):
            raise ValueError("wrong length")
        return tuple(_convert(item, arg) for item, arg in zip(items, args, strict=True))
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError("not a boolean")
    if hint is int:
        if isinstance(value, bool):
            raise TypeError("bool is not int")
        if isinstance(value, float) and not value.is_integer():
            raise ValueError("not an integer")
        return int(value) if not isinstance(value, str) else int(value.strip())
    if hint is float:
        if isinstance(value, bool):
            raise TypeError("bool is not float")
        return float(value)
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        if hasattr(value, "__fspath__"):
            return str(value)
        raise TypeError("not a string")
    return value


def _as_sequence(value: Any) -> list[Any]:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("[", "(")):
            parsed = ast.literal_eval(text)
            return list(parsed) if isinstance(parsed, (list, tuple)) else [parsed]
        return [part for part in text.split(",") if part.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, (int, float)):
        return [value]
    try:
        return list(value)
    except TypeError:
        raise TypeError("not a sequence") from None
