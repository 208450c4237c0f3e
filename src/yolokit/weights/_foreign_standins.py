"""The inert stand-ins that allow-listed pickle globals resolve to (private helper of ``weights._foreign_globals``).

Records (:class:`ModuleRecord`, :class:`NamespaceRecord`, :class:`AttrRef`, numpy dtype and array records) only store
the state a pickle gives them. The functions (tensor rebuild with bounds checks, ``torch.Size``, ``OrderedDict``,
``set``, numpy scalars, paths, ...) validate their arguments and build plain values; :func:`standin_functions` names
the global each replaces, and :class:`_Global` is what the unpickler calls. Nothing of the real classes is imported or
run.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import pathlib
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from yolokit.errors import WeightsError
from yolokit.weights._foreign_archive import _REDO, _Malformed, _Storage


# --- inert records -------------------------------------------------------------------------------------------------
class ModuleRecord:
    """Inert stand-in for a pickled class instance (an ``nn.Module``, a loss, ...). Nothing of the class runs.

    ``type_name``/``module`` name the class; ``parameters``, ``buffers``, ``modules`` are the module's
    ``_parameters``/``_buffers``/``_modules`` dicts; every other state entry is in ``attributes``.
    """

    def __init__(self, module: str, type_name: str, init_args: tuple = ()) -> None:
        self.module, self.type_name, self.init_args = module, type_name, init_args
        self.attributes: dict[str, Any] = {}
        self.parameters: dict[str, Any] = {}
        self.buffers: dict[str, Any] = {}
        self.modules: dict[str, Any] = {}
        self.non_persistent: set = set()

    def __setstate__(self, state: Any) -> None:
        """Store the pickled state (a dict, or a ``(dict, slots)`` pair); only dict updates, no calls."""
        parts = state if isinstance(state, tuple) and len(state) == 2 else (state,)
        for part in parts:
            if part is None:
                continue
            if not isinstance(part, dict):
                raise _Malformed(f"state of {self.type_name} is a {type(part).__name__}, expected a dict")
            for key, value in part.items():
                slot = {"_parameters": "parameters", "_buffers": "buffers", "_modules": "modules"}.get(key)
                if slot and isinstance(value, dict):
                    setattr(self, slot, dict(value))
                elif key == "_non_persistent_buffers_set" and isinstance(value, (set, frozenset, list)):
                    self.non_persistent = set(value)
                else:
                    self.attributes[str(key)] = value

    def __repr__(self) -> str:
        return f"<{self.module}.{self.type_name} record>"


class NamespaceRecord:
    """Inert stand-in for ``IterableSimpleNamespace``/``SimpleNamespace``: a dict of values."""

    def __init__(self, type_name: str, values: dict | None = None) -> None:
        self.type_name, self.values = type_name, dict(values or {})

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise _Malformed(f"state of {self.type_name} is a {type(state).__name__}, expected a dict")
        self.values.update({str(k): v for k, v in state.items()})


@dataclasses.dataclass
class AttrRef:
    """What ``builtins.getattr(obj, name)`` would have returned (e.g. a pickled bound method); never resolved."""

    target: Any
    name: str


class _NumpyDType:
    """``numpy.dtype`` restricted to plain numeric kinds (no object/structured dtypes)."""

    _DESCR = re.compile(r"^(?:[iufc][1-9][0-9]?|b1|\?)$")

    def __init__(self, descr: Any, *_flags: Any) -> None:
        if not isinstance(descr, str) or not self._DESCR.match(descr):
            raise _Malformed(f"numpy dtype {descr!r} is not a plain numeric dtype")
        self.descr, self.byteorder = descr, "="

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "=", "|"):
            self.byteorder = state[1]

    def resolve(self) -> Any:
        return np.dtype(self.byteorder + self.descr if self.byteorder in "<>" else self.descr)


class _NdArray:
    """``numpy.core.multiarray._reconstruct`` + BUILD: numeric arrays from raw bytes, object arrays as lists."""

    def __init__(self) -> None:
        self.value: Any = None

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[2], _NumpyDType)):
            raise _Malformed("numpy array state is not (version, shape, dtype, fortran, data)")
        _, shape, dtype, fortran, raw = state
        if isinstance(raw, list):
            self.value = raw
            return
        if not isinstance(raw, (bytes, bytearray)) or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise _Malformed("numpy array data is not raw bytes with an int shape")
        itemsize = dtype.resolve().itemsize
        if len(raw) % itemsize or len(raw) // itemsize != math.prod(shape):
            raise _Malformed(f"numpy array of shape {tuple(shape)} has {len(raw)} bytes of {dtype.descr}")
        flat = np.frombuffer(raw, dtype=dtype.resolve())  # a view: the pickle's bytes are not copied
        if flat.size != math.prod(shape):
            raise _Malformed(f"numpy array of shape {tuple(shape)} has {flat.size} elements")
        self.value = flat.reshape(shape, order="F" if fortran else "C")


_BUILDABLE = (ModuleRecord, NamespaceRecord, _NumpyDType, _NdArray)


# --- what the unpickler calls --------------------------------------------------------------------------------------
class _Global:
    """An allow-listed callable global: calling it runs only the yolokit stand-in ``fn``."""

    __slots__ = ("qualname", "fn")

    def __init__(self, qualname: str, fn: Callable[..., Any]) -> None:
        self.qualname, self.fn = qualname, fn

    def invoke(self, args: Any, kwargs: Any = None) -> Any:
        if not isinstance(args, tuple) or not isinstance(kwargs or {}, dict):
            raise _Malformed(f"call of {self.qualname} with non-tuple arguments")
        try:
            return self.fn(*args, **(kwargs or {}))
        except (TypeError, ValueError, OverflowError) as exc:
            raise _Malformed(f"bad arguments to {self.qualname}: {exc}") from exc


@dataclasses.dataclass(frozen=True)
class _StorageType:
    name: str
    dtype: Any


_NDARRAY_TYPE = object()  # marker for numpy.ndarray as the first argument of _reconstruct


# --- stand-in functions --------------------------------------------------------------------------------------------
def _new_record(module: str, name: str, *args: Any, **_kwargs: Any) -> ModuleRecord:
    return ModuleRecord(module, name, tuple(args))


def _new_namespace(type_name: str, *args: Any, **kwargs: Any) -> NamespaceRecord:
    values = dict(args[0]) if args and isinstance(args[0], dict) else {}
    return NamespaceRecord(type_name, {**values, **{str(k): v for k, v in kwargs.items()}})


def _ints(values: Any, what: str) -> tuple[int, ...]:
    if not isinstance(values, (tuple, list)) or len(values) > 64:
        raise _Malformed(f"{what} is not a sequence of at most 64 ints")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise _Malformed(f"{what} {values!r} holds values that are not non-negative ints")
    return tuple(values)


def _tensor_view(storage: Any, offset: Any, size: Any, stride: Any, dtype: Any = None) -> torch.Tensor:
    """The tensor ``(storage, offset, size, stride)`` describes, after checking it lies inside the storage."""
    if not isinstance(storage, _Storage):
        raise _Malformed(f"tensor storage is a {type(storage).__name__}, expected an archive storage")
    size, stride = _ints(size, "tensor size"), _ints(stride, "tensor stride")
    (offset,) = _ints((offset,), "storage offset")
    if len(size) != len(stride):
        raise _Malformed(f"tensor size {size} and stride {stride} differ in length")
    if math.prod(size) > 2**48 or offset > 2**48 or any(s > 2**48 for s in stride):
        raise _Malformed(f"tensor of size {size}, stride {stride}, offset {offset} is implausibly large")
    flat = storage.typed(storage.dtype if dtype is None else dtype)
    needed = 0 if 0 in size else offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) + 1
    if needed > flat.numel():
        raise WeightsError(
            f"{storage.path}: a tensor of shape {list(size)} needs {needed} elements but storage '{storage.key}' "
            f"holds {flat.numel()}; the file is corrupt, {_REDO}"
        )
    numel = math.prod(size)
    if numel > flat.numel():  # e.g. a zero-stride view that would expand a few bytes to gigabytes when copied
        raise WeightsError(
            f"{storage.path}: a tensor of shape {list(size)} (stride {list(stride)}) has {numel} elements but its "
            f"storage '{storage.key}' holds {flat.numel()}; refused (corrupt or malicious file), {_REDO}"
        )
    storage.charge(numel * flat.dtype.itemsize)
    return flat.as_strided(size, stride, offset)


def _rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any, *_grad_hooks_meta: Any) -> torch.Tensor:
    return _tensor_view(storage, offset, size, stride)


def _rebuild_tensor_v3(
    storage: Any, offset: Any, size: Any, stride: Any, _grad: Any, _hooks: Any, dtype: Any, *_meta: Any
) -> torch.Tensor:
    if not isinstance(dtype, torch.dtype):
        raise _Malformed(f"_rebuild_tensor_v3 dtype is a {type(dtype).__name__}")
    return _tensor_view(storage, offset, size, stride, dtype)


def _rebuild_parameter(data: Any, *_grad_hooks_state: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise _Malformed(f"parameter data is a {type(data).__name__}, expected a tensor")
    return data


def _torch_size(values: Any = ()) -> tuple[int, ...]:
    return _ints(values, "torch.Size")


def _torch_device(*args: Any) -> str:
    if not args or not isinstance(args[0], str) or not all(isinstance(a, int) for a in args[1:]):
        raise _Malformed(f"torch.device arguments {args!r}")
    return ":".join(str(a) for a in args)


def _ordered_dict(items: Any = ()) -> collections.OrderedDict:
    if not isinstance(items, (list, tuple, dict)):
        raise _Malformed(f"OrderedDict from a {type(items).__name__}")
    return collections.OrderedDict(items)


def _set(items: Any = ()) -> set:
    if not isinstance(items, (list, tuple, set, frozenset)):
        raise _Malformed(f"set from a {type(items).__name__}")
    return set(items)


def _slice(*args: Any) -> slice:
    if not all(a is None or (isinstance(a, int) and not isinstance(a, bool)) for a in args):
        raise _Malformed(f"slice arguments {args!r}")
    return slice(*args)


def _complex(real: Any = 0.0, imag: Any = 0.0) -> complex:
    if not all(isinstance(v, (int, float)) for v in (real, imag)):
        raise _Malformed(f"complex arguments {real!r}, {imag!r}")
    return complex(real, imag)


def _getattr(target: Any, name: Any, *_default: Any) -> AttrRef:
    if not isinstance(name, str):
        raise _Malformed(f"getattr with a {type(name).__name__} name")
    return AttrRef(target, name)


def _bytes(*args: Any) -> bytes:
    if not args:
        return b""
    return _encode(*args)


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Malformed("only latin-1 encoding of a str is accepted for bytes")
    return text.encode("latin-1")


def _path_str(*parts: Any, windows: bool = False) -> str:
    if not all(isinstance(p, str) for p in parts):
        raise _Malformed("path parts must be strings")
    return str((pathlib.PureWindowsPath if windows else pathlib.PurePosixPath)(*parts))


def _numpy_scalar(dtype: Any, raw: Any = b"") -> Any:
    if not isinstance(dtype, _NumpyDType) or not isinstance(raw, (bytes, bytearray)):
        raise _Malformed("numpy scalar needs a numeric dtype and raw bytes")
    if len(raw) != dtype.resolve().itemsize:
        raise _Malformed(f"numpy scalar of {dtype.descr} holds {len(raw)} bytes")
    values = np.frombuffer(raw, dtype=dtype.resolve())
    return values[0].item()


def _numpy_reconstruct(subtype: Any, *_shape_typecode: Any) -> _NdArray:
    if subtype is not _NDARRAY_TYPE:
        raise _Malformed("numpy _reconstruct of a type other than numpy.ndarray")
    return _NdArray()


def standin_functions() -> dict[str, Callable[..., Any]]:
    """``"module.name"`` of every allow-listed function global -> the yolokit function that runs in its place."""
    functions: dict[str, Callable[..., Any]] = {
        "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2, "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
        "torch._utils._rebuild_parameter": _rebuild_parameter,
        "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
        "torch.Size": _torch_size, "torch.device": _torch_device, "collections.OrderedDict": _ordered_dict,
        "builtins.set": _set, "builtins.frozenset": lambda items=(): frozenset(_set(items)),
        "builtins.slice": _slice, "builtins.complex": _complex, "builtins.getattr": _getattr,
        "builtins.bytes": _bytes, "builtins.bytearray": lambda *a: bytearray(_bytes(*a)), "_codecs.encode": _encode,
        "pathlib.PosixPath": _path_str, "pathlib.PurePosixPath": _path_str,
        "pathlib.WindowsPath": functools.partial(_path_str, windows=True),
        "pathlib.PureWindowsPath": functools.partial(_path_str, windows=True), "numpy.dtype": _NumpyDType,
    }  # fmt: skip
    for core in ("numpy.core.multiarray", "numpy._core.multiarray"):
        functions[f"{core}.scalar"] = _numpy_scalar
        functions[f"{core}._reconstruct"] = _numpy_reconstruct
    return functions
