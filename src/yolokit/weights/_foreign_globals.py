"""The allow-list of pickle globals and the inert stand-ins they resolve to (private helper of ``weights.foreign``).

Every class a reference checkpoint pickles (``ultralytics`` modules, ``torch.nn`` layers, losses, namespaces) becomes
an inert record that only stores its state; the few functions a checkpoint calls (tensor rebuild, ``torch.Size``,
``OrderedDict``, ``set``, numpy scalars, paths, ...) are replaced by yolokit functions that validate their arguments.
Nothing of the real classes is imported or run.
"""

from __future__ import annotations

import _compat_pickle
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


@dataclasses.dataclass(frozen=True)
class GlobalRef:
    """One global a pickle references: ``module``, ``name`` as written, and whether the allow-list accepts it."""

    module: str
    name: str
    allowed: bool

    @property
    def qualname(self) -> str:
        """``module.name`` as written in the pickle."""
        return f"{self.module}.{self.name}"

    @property
    def resolved(self) -> str:
        """The Python 3 name (``__builtin__.exec`` -> ``builtins.exec``) the unpickler looks up."""
        return normalize_global(self.module, self.name)

    def describe(self) -> str:
        """``'builtins.exec'`` or ``'subprocess.Popen' (pickled as 'commands.Popen')``."""
        resolved = self.resolved
        return f"'{resolved}'" + (f" (pickled as '{self.qualname}')" if resolved != self.qualname else "")


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


# --- allow-listed globals ------------------------------------------------------------------------------------------
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
_RECORD_CLASSES = {
    "ultralytics.nn.tasks": "DetectionModel YOLOv10DetectionModel SegmentationModel PoseModel OBBModel "
    "ClassificationModel RTDETRDetectionModel WorldModel YOLOEModel YOLOESegModel",
    "ultralytics.nn.modules.conv": "Conv Conv2 LightConv DWConv DWConvTranspose2d ConvTranspose Focus GhostConv "
    "ChannelAttention SpatialAttention CBAM Concat RepConv Index",
    "ultralytics.nn.modules.block": "DFL Proto HGStem HGBlock SPP SPPF C1 C2 C3 C2f C3x C3TR C3Ghost GhostBottleneck "
    "Bottleneck BottleneckCSP ResNetBlock ResNetLayer C2fAttn ImagePoolingAttn ContrastiveHead BNContrastiveHead "
    "RepBottleneck RepCSP RepNCSPELAN4 ELAN1 ADown AConv SPPELAN CBFuse CBLinear C3k2 C3k C2fPSA C2PSA RepVGGDW CIB "
    "C2fCIB Attention PSA PSABlock SCDown AAttn ABlock A2C2f Silence",
    "ultralytics.nn.modules.head": "Detect Segment Pose Classify OBB WorldDetect v10Detect RTDETRDecoder",
    "ultralytics.nn.modules.transformer": "TransformerEncoderLayer TransformerLayer TransformerBlock MLPBlock MLP "
    "LayerNorm2d AIFI",
    "ultralytics.utils.loss": "v8DetectionLoss E2EDetectLoss v10DetectLoss E2ELoss BboxLoss DFLoss VarifocalLoss "
    "FocalLoss v8SegmentationLoss v8PoseLoss v8OBBLoss v8ClassificationLoss KeypointLoss RotatedBboxLoss",
    "ultralytics.utils.tal": "TaskAlignedAssigner RotatedTaskAlignedAssigner",
    "torch.nn.modules.conv": "Conv1d Conv2d Conv3d ConvTranspose1d ConvTranspose2d",
    "torch.nn.modules.batchnorm": "BatchNorm1d BatchNorm2d BatchNorm3d SyncBatchNorm",
    "torch.nn.modules.activation": "SiLU ReLU ReLU6 LeakyReLU Hardswish Hardsigmoid Sigmoid Tanh GELU Mish Softmax "
    "MultiheadAttention",
    "torch.nn.modules.container": "Sequential ModuleList ModuleDict ParameterList ParameterDict",
    "torch.nn.modules.pooling": "MaxPool2d AvgPool2d AdaptiveAvgPool2d AdaptiveMaxPool2d",
    "torch.nn.modules.upsampling": "Upsample",
    "torch.nn.modules.linear": "Identity Linear NonDynamicallyQuantizableLinear",
    "torch.nn.modules.dropout": "Dropout Dropout2d",
    "torch.nn.modules.normalization": "LayerNorm GroupNorm",
    "torch.nn.modules.flatten": "Flatten",
    "torch.nn.modules.padding": "ZeroPad2d",
    "torch.nn.modules.loss": "BCEWithLogitsLoss BCELoss MSELoss L1Loss SmoothL1Loss CrossEntropyLoss",
    # a classifier's recorded eval transform (model.transforms): read by weights._foreign_transforms, never run
    "torchvision.transforms.transforms": "Compose Resize CenterCrop ToTensor Normalize",
    "torchvision.transforms.functional": "InterpolationMode",
    "ultralytics.data.augment": "CenterCrop ToTensor ClassifyLetterBox",
    # yolov5-repository detection checkpoints (weights.yolov5 rebuilds them; its -seg / -cls classes stay refused)
    "models.yolo": "Model DetectionModel Detect",
    "models.common": "Conv Bottleneck C3 BottleneckCSP SPP SPPF Focus Concat",
}
_ALIASES = {
    "ultralytics.yolo.utils.loss": "ultralytics.utils.loss", "ultralytics.yolo.utils.tal": "ultralytics.utils.tal",
    "ultralytics.yolo.data.augment": "ultralytics.data.augment",
}  # fmt: skip
_NAMESPACES = ("ultralytics.utils.IterableSimpleNamespace", "ultralytics.yolo.utils.IterableSimpleNamespace",
               "types.SimpleNamespace", "argparse.Namespace")  # fmt: skip
_STORAGES = {
    "HalfStorage": "float16", "FloatStorage": "float32", "DoubleStorage": "float64", "BFloat16Storage": "bfloat16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
    "ByteStorage": "uint8", "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128", "UntypedStorage": "uint8",
}  # fmt: skip
_TORCH_DTYPES = "float16 float32 float64 bfloat16 int64 int32 int16 int8 uint8 bool complex64 complex128 half float"


def normalize_global(module: str, name: str) -> str:
    """The Python 3 name of a pickled global: ``'__builtin__', 'set'`` -> ``'builtins.set'`` (protocol-2 names,
    mapped like ``pickle`` does with ``fix_imports``; e.g. ``commands.Popen`` -> ``subprocess.Popen``), with the
    legacy ultralytics module aliases resolved."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    module = "pathlib" if module == "pathlib._local" else _ALIASES.get(module, module)
    if module == "ultralytics.nn.modules":  # 8.0.x before 8.0.9x: one flat modules.py; now conv/block/head/...
        module = next((f"{module}.{sub}" for sub in ("conv", "block", "head", "transformer")
                       if name in _RECORD_CLASSES[f"{module}.{sub}"].split()), module)
    return f"{module}.{name}"


def is_allowed(module: str, name: str) -> bool:
    """Whether the restricted unpickler accepts the global ``module.name``."""
    return normalize_global(module, name) in _allow_table()


@functools.lru_cache(maxsize=1)
def _allow_table() -> dict[str, Any]:
    """``"module.name"`` -> the object the restricted unpickler returns for it (stand-ins, markers, constants)."""
    table: dict[str, Any] = {}
    for module, names in _RECORD_CLASSES.items():
        for name in names.split():
            table[f"{module}.{name}"] = _Global(f"{module}.{name}", functools.partial(_new_record, module, name))
    for qualname in _NAMESPACES:
        table[qualname] = _Global(qualname, functools.partial(_new_namespace, qualname.rsplit(".", 1)[1]))
    for name, dtype in _STORAGES.items():
        table[f"torch.{name}"] = _StorageType(name, getattr(torch, dtype))
    for name in _TORCH_DTYPES.split():
        table[f"torch.{name}"] = getattr(torch, name)
    functions = {
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
    table.update({qualname: _Global(qualname, fn) for qualname, fn in functions.items()})
    table["numpy.ndarray"] = _NDARRAY_TYPE
    return table


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
