"""The allow-list of pickle globals (private helper of ``weights.foreign``): which ``module.name`` a checkpoint may
reference, and the inert stand-in each one resolves to (built in ``_foreign_standins``).

Every class a reference checkpoint pickles (``ultralytics`` modules, ``torch.nn`` layers, losses, namespaces) becomes
an inert record that only stores its state; the few functions a checkpoint calls (tensor rebuild, ``torch.Size``,
``OrderedDict``, ``set``, numpy scalars, paths, ...) are replaced by yolokit functions that validate their arguments.
Nothing of the real classes is imported or run. The records are re-exported here (their import path since the start).
"""

from __future__ import annotations

import _compat_pickle
import dataclasses
import functools
from typing import Any

import torch

from yolokit.weights._foreign_standins import (
    _BUILDABLE,
    _NDARRAY_TYPE,
    AttrRef,
    ModuleRecord,
    NamespaceRecord,
    _Global,
    _NdArray,
    _new_namespace,
    _new_record,
    _StorageType,
    standin_functions,
)

__all__ = [
    "AttrRef", "GlobalRef", "ModuleRecord", "NamespaceRecord", "is_allowed", "normalize_global",
    "_BUILDABLE", "_Global", "_NdArray", "_StorageType",
]  # fmt: skip


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



# --- the allow-list ------------------------------------------------------------------------------------------------
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
    table.update({qualname: _Global(qualname, fn) for qualname, fn in standin_functions().items()})
    table["numpy.ndarray"] = _NDARRAY_TYPE
    return table
