"""Generic machinery of settings dataclasses: range checks, the ``Settings`` base, groups, string conversion.

The concrete settings of each mode (and the settings guide) are in :mod:`yolokit.config`, which re-exports the
names here; import them from there. No yolokit imports except ``errors``: every layer may use this module.
"""

from __future__ import annotations

import ast
import dataclasses
import logging
import math
import numbers
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from yolokit.errors import ConfigError

__all__ = ["MAX_IMGSZ", "Settings", "group", "check_range", "check_choice", "check_imgsz", "fit_imgsz",
           "check_device", "construct_settings", "flat_config", "parse_key_values", "convert_value", "field_routes"]

C = TypeVar("C")
logger = logging.getLogger(__name__)

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}
MAX_IMGSZ = 8192  # largest accepted image side, in pixels
_DEVICE = re.compile(r"(cpu|mps|cuda(:\d+)?)")


# --- range checks (shared by every settings class, the training config included) ---------------------------------
def check_range(key: str, value: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
                lt: float | None = None, example: Any = None) -> Any:
    """Return ``value`` if it lies within the bounds (``ge`` <= value, ``gt`` < value, ...), else raise.

    ``ConfigError`` one-liner: ``"conf must be in [0, 1], got 1.5: pass e.g. conf=0.25"``. NaN never passes.
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value)
    ok = ok and (ge is None or value >= ge) and (gt is None or value > gt)
    ok = ok and (le is None or value <= le) and (lt is None or value < lt)
    if not ok:
        raise ConfigError(f"{key} must be {_describe_bounds(ge, gt, le, lt)}, got {value!r}"
                          + (f": pass e.g. {key}={example}" if example is not None else ""))
    return value


def _describe_bounds(ge: float | None, gt: float | None, le: float | None, lt: float | None) -> str:
    low, high = (ge, "[") if ge is not None else (gt, "("), (le, "]") if le is not None else (lt, ")")
    if low[0] is not None and high[0] is not None:
        return f"in {low[1]}{low[0]:g}, {high[0]:g}{high[1]}"
    if low[0] is not None:
        return f"{'>=' if ge is not None else '>'} {low[0]:g}"
    return f"{'<=' if le is not None else '<'} {high[0]:g}" if high[0] is not None else "a number"


def check_choice(key: str, value: Any, choices: Sequence[Any], example: Any = None) -> Any:
    """Return ``value`` if it is one of ``choices``, else ``"engine must be one of a, b, got 'x': pass e.g. ..."``."""
    if value not in choices:
        example = choices[0] if example is None else example
        raise ConfigError(f"{key} must be one of {', '.join(map(str, choices))}, got {value!r}: pass e.g. "
                          f"{key}={example!r}")
    return value


def check_imgsz(key: str, value: Any, example: Any = 640) -> None:
    """An image size: one int or ``(height, width)``, each side in ``1..MAX_IMGSZ`` pixels."""
    sides = [value] if _is_int(value) else value
    ok = isinstance(sides, Sequence) and not isinstance(sides, str) and len(sides) in (1, 2)
    if not ok or not all(_is_int(s) and 1 <= s <= MAX_IMGSZ for s in sides):
        raise ConfigError(f"{key} must be a size in 1..{MAX_IMGSZ} pixels (an int or (height, width)), got "
                          f"{value!r}: pass e.g. {key}={example}")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def fit_imgsz(imgsz: int | Sequence[int], stride: int, key: str = "imgsz") -> int | tuple[int, int]:
    """Round every side of ``imgsz`` up to a multiple of ``stride``, with a warning when it changes (as the
    reference does): ``fit_imgsz(300, 32) -> 320``; ``(300, 480) -> (320, 480)``. An int stays an int."""
    stride = max(int(stride), 1)
    sides = [int(imgsz)] if _is_int(imgsz) else [int(s) for s in imgsz]
    fitted = [int(math.ceil(s / stride) * stride) for s in sides]
    result: int | tuple[int, int] = fitted[0] if _is_int(imgsz) else (fitted[0], fitted[-1])
    if fitted != sides:
        logger.warning("%s=%s is not a multiple of the model stride %d: using %s", key, imgsz, stride, result)
    return result


def check_device(key: str, value: Any) -> str:
    """``"cpu"``, ``"mps"``, ``"cuda"``, ``"cuda:N"`` or a GPU index ``"N"`` (-> ``"cuda:N"``); lower-cased."""
    text = str(value).strip().lower()
    if text.isdigit():
        text = f"cuda:{int(text)}"
    if not _DEVICE.fullmatch(text):
        raise ConfigError(f"{key} must be 'cpu', 'cuda', 'cuda:N', a GPU index N or 'mps', got {value!r}: pass e.g. "
                          f"{key}=cpu")
    return text


# --- settings classes ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """Base of every settings dataclass: :meth:`check` runs on construction (``make_config`` and direct calls)."""

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise ``ConfigError`` for the first bad value; subclasses extend it (calling ``super().check()``)."""

    def check_range(self, key: str, **bounds: float) -> None:
        """:func:`check_range` on this object's ``key``, suggesting the field's default."""
        check_range(key, getattr(self, key), example=_default(type(self), key), **bounds)

    def check_choice(self, key: str, choices: Sequence[Any]) -> None:
        check_choice(key, getattr(self, key), choices, example=_default(type(self), key))

    def normalize(self, key: str, value: Any) -> None:
        """Replace a field's value during :meth:`check` (the dataclass is frozen)."""
        object.__setattr__(self, key, value)


def _default(cls: type, key: str) -> Any:
    field = next(f for f in dataclasses.fields(cls) if f.name == key)
    return None if field.default is dataclasses.MISSING else field.default


def group(cls: type[C]) -> C:
    """A nested settings group as a field (``aug: AugmentSettings = group(AugmentSettings)``); its keys stay flat
    for ``make_config`` and the CLI."""
    return dataclasses.field(default_factory=cls, metadata={"group": True})


# --- groups and conversion ----------------------------------------------------------------------------------------
def _fields(cls: type) -> list[tuple[str, type | None]]:
    """``(name, group class or None)`` for each field of ``cls``."""
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name] if f.metadata.get("group") else None) for f in dataclasses.fields(cls)]


def field_routes(cls: type, prefix: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    """Flat key -> path of field names (``{"epochs": ("epochs",), "mosaic": ("aug", "mosaic")}``)."""
    routes: dict[str, tuple[str, ...]] = {}
    for name, group_cls in _fields(cls):
        inner = field_routes(group_cls, (*prefix, name)) if group_cls is not None else {name: (*prefix, name)}
        for key, path in inner.items():
            if key in routes:
                raise ConfigError(f"{cls.__name__}: key '{key}' is defined twice ({'.'.join(routes[key])} and "
                                  f"{'.'.join(path)}): keys must be unique across groups")
            routes[key] = path
    return routes


def construct_settings(cls: type[C], tree: dict[str, Any]) -> C:
    """``cls(**tree)`` with each value converted to its annotated type and each group's sub-dict built first."""
    hints = typing.get_type_hints(cls)
    groups = dict(_fields(cls))
    converted = {}
    for name, value in tree.items():
        group_cls = groups[name]
        converted[name] = (construct_settings(group_cls, value) if group_cls is not None
                           else convert_value(name, value, hints[name]))
    return cls(**converted)


def flat_config(config: Any) -> dict[str, Any]:
    """Every value of a settings object under its flat key (groups flattened), e.g. to record train settings."""
    out: dict[str, Any] = {}
    for name, group_cls in _fields(type(config)):
        value = getattr(config, name)
        out.update(flat_config(value) if group_cls is not None else {name: value})
    return out


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
        expected = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
        expected = expected.replace("NoneType", "None")
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
