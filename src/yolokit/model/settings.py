"""The settings of predict and val that need the model: checks (class ids, device, ``imgsz`` fitted to the stride)
and the defaults the weights record (their ``imgsz``). Functions of plain values; :class:`yolokit.model.YOLO` passes
what it holds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from yolokit.config import fit_imgsz
from yolokit.errors import ConfigError


def fit_to_model(cfg: Any, names: Mapping[int, str], stride: int, *, check_device: bool = True) -> Any:
    """``cfg`` checked against the model before any work: ``classes`` must be class ids of ``names``, the device
    must be present (when ``check_device``), and ``imgsz`` is rounded up to a multiple of ``stride`` (with a
    warning; a new settings object, ``cfg`` itself when it already fits)."""
    for class_id in getattr(cfg, "classes", None) or ():
        if class_id >= len(names):
            raise ConfigError(f"classes must be class ids of this model (0..{len(names) - 1}), got {class_id}: "
                              f"pass e.g. classes=0 ({names.get(0, '0')})")
    if check_device:
        check_device_present(cfg.device)
    imgsz = fit_imgsz(cfg.imgsz, stride)
    return cfg if imgsz == cfg.imgsz else dataclasses.replace(cfg, imgsz=imgsz)


def recorded_imgsz(metadata: Mapping[str, Any], square: bool = False) -> int | tuple[int, int] | None:
    """The ``imgsz`` the weights record (their training or export size): an int, ``(h, w)`` for a rectangular one,
    or its long side when ``square``; None when nothing (or nothing readable) is recorded."""
    recorded = metadata.get("imgsz")
    if not recorded:
        return None
    try:
        sides = [int(recorded)] if isinstance(recorded, (int, float)) else [int(s) for s in recorded][:2]
    except (TypeError, ValueError):
        return None  # unreadable: the settings' own default (the range check still applies to the rest)
    if not sides:
        return None
    return max(sides) if square or len(set(sides)) == 1 else (sides[0], sides[-1])


def defaults_note(metadata: Mapping[str, Any]) -> str:
    """``"predict/val default imgsz=320 (recorded in the weights)"``, plus a recorded val dataset."""
    recorded = recorded_imgsz(metadata)
    text = (f"predict/val default imgsz={recorded} (recorded in the weights)" if recorded is not None
            else "predict/val default imgsz=640 (yolokit's default: the weights record no size)")
    data = (metadata.get("provenance") or {}).get("train_args", {}).get("data")
    return text + (f", val data={data} (recorded)" if data else "")


def check_file_backend(device: str, half: bool, engine: str, path: Any) -> None:
    """The settings a model loaded from the ONNX file ``path`` runs with: ONNX Runtime on the CPU, fp32."""
    if engine not in ("auto", "onnxruntime"):
        raise ConfigError(f"engine={engine!r} needs PyTorch weights; {path} is an ONNX model: use "
                          "engine='auto' or load the .safetensors/.pt file it was exported from")
    if str(device) != "cpu":
        raise ConfigError(f"an ONNX model runs on the CPU here, got device={device!r}: pass device='cpu'")
    if half:
        raise ConfigError("half=True needs PyTorch weights; an ONNX model runs in the precision it was exported "
                          "in: pass half=False")


def check_device_present(device: str) -> None:
    """A one-line ``ConfigError`` (not torch's traceback) for a CUDA/MPS device this machine does not have."""
    import torch

    kind, _, index = device.partition(":")
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device={device!r} needs a CUDA GPU, and this torch build sees none: pass device=cpu")
        if index and int(index) >= count:
            raise ConfigError(f"device={device!r}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}: "
                              "pass e.g. device=cuda:0")
    elif kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device='mps' needs Apple's Metal GPU, which this machine or torch build lacks: pass "
                          "device=cpu")
