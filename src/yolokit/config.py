"""Settings for each mode as frozen dataclasses, checked where they enter, and strict ``key=value`` parsing.

An unknown key is an error that names a close valid key (or, for a setting of the reference implementation that
yolokit does not have, says so); a value of the wrong type names the key, the expected type and the value found; a
value out of range (``conf=1.5``, ``batch=0``, ``imgsz=-5``) is a ``ConfigError`` raised when the settings object is
built, before any model runs. The Python API (``YOLO.predict(conf=0.5)``) and the CLI (``yolokit predict conf=0.5``)
go through the same :func:`make_config`, so both accept exactly the same keys and values.

Writing a settings class (the training config follows the same pattern)::

    @dataclass(frozen=True)
    class AugmentSettings(Settings):
        mosaic: float = 1.0

        def check(self) -> None:
            self.check_range("mosaic", ge=0, le=1)

    @dataclass(frozen=True)
    class TrainConfig(Settings):
        epochs: int = 100
        aug: AugmentSettings = group(AugmentSettings)  # nested: cfg.aug.mosaic; flat on the CLI: mosaic=0.5

        def check(self) -> None:
            self.check_range("epochs", ge=1)

``make_config(TrainConfig, {"mosaic": "0.5"})`` routes ``mosaic`` into the group (``aug.mosaic=0.5`` works too);
keys must be unique across a class and its groups. :func:`flat_config` gives every value under its flat key.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, TypeVar

from yolokit.errors import ConfigError
from yolokit.utils.settings import (
    MAX_IMGSZ,
    Settings,
    check_choice,
    check_device,
    check_imgsz,
    check_range,
    construct_settings,
    convert_value,
    field_routes,
    fit_imgsz,
    flat_config,
    group,
    parse_key_values,
)

__all__ = [
    "ENGINES", "EXPORT_FORMATS", "MAX_IMGSZ", "REFERENCE_ONLY", "Settings", "InferenceConfig", "PredictConfig",
    "ValConfig", "ExportConfig", "InfoConfig", "make_config", "config_keys", "flat_config", "group", "check_range",
    "check_choice", "check_imgsz", "check_device", "fit_imgsz", "parse_key_values", "convert_value",
    "unknown_key_message",
]  # fmt: skip

C = TypeVar("C")

ENGINES = ("auto", "eager", "channels_last", "jit", "onnxruntime")  # inference engines (see yolokit.backends)
EXPORT_FORMATS = ("onnx", "safetensors", "pt")

# Settings of the reference implementation that yolokit does not have: a clear word instead of a "did you mean".
REFERENCE_ONLY = {
    "show": "there is no display window; use save=True and open the saved image",
    "augment": "test-time augmentation is not available",
    "visualize": "feature-map visualization is not available",
    "save_frames": "use save=True (a video source is saved as a video)",
    "tracker": "tracking is not available",
    "persist": "tracking is not available",
    "show_boxes": "use save=True; drawing options are show_labels, show_conf and line_width",
    "retina_masks": "yolokit predicts boxes (no segmentation masks)",
    "embed": "feature embeddings are not available",
    "stream_buffer": "frames are read in order; use vid_stride=N to skip frames",
    "dnn": "OpenCV DNN is not used; an exported .onnx file runs on ONNX Runtime",
    "save_hybrid": "hybrid labels are not written",
    "single_cls": "validation uses the dataset's classes",
    "simplify": "the ONNX graph is written as exported (no onnxslim pass)",
    "optimize": "TorchScript mobile optimization is not available; export format=onnx",
    "cfg": "settings are key=value words (no settings YAML)",
}
# Names other YOLO code bases use for yolokit's keys.
ALIASES = {"conf_thres": "conf", "confidence": "conf", "iou_thres": "iou", "img_size": "imgsz", "img": "imgsz",
           "batch_size": "batch", "max_detections": "max_det", "agnostic": "agnostic_nms"}



@dataclass(frozen=True)
class InferenceConfig(Settings):
    """The settings predict and val share (defaults: predict's; :class:`ValConfig` overrides some)."""

    imgsz: int | tuple[int, int] = 640  # inference size (square int, or (height, width)); rounded up to the stride
    batch: int = 1  # images per forward pass
    conf: float = 0.25  # minimum confidence of a kept box
    iou: float = 0.7  # NMS IoU threshold
    max_det: int = 300  # maximum boxes per image
    nms: bool = True  # YOLO26: False selects the NMS-free end-to-end head
    end2end: bool | None = None  # deprecated alias: end2end=True is nms=False
    half: bool = False  # fp16 inference (CUDA; on the CPU fp32 is used with a warning)
    device: str = "cpu"  # cpu | cuda | cuda:N | N (GPU index) | mps
    engine: str = "auto"  # auto | eager | channels_last | jit (traced + frozen per shape) | onnxruntime (CPU)
    project: str = "runs"
    name: str = "predict"
    exist_ok: bool = False  # reuse the run directory instead of numbering a new one
    verbose: bool = True

    def check(self) -> None:
        check_imgsz("imgsz", self.imgsz)
        self.check_range("batch", ge=1)
        self.check_range("conf", ge=0, le=1)
        self.check_range("iou", ge=0, le=1)
        self.check_range("max_det", ge=1)
        self.normalize("device", check_device("device", self.device))
        self.check_choice("engine", ENGINES)
        if self.engine == "onnxruntime" and self.device != "cpu":
            raise ConfigError(f"engine='onnxruntime' runs on the CPU, got device={self.device!r}: pass device='cpu' "
                              "or engine='auto'")


@dataclass(frozen=True)
class PredictConfig(InferenceConfig):
    """Inference settings (defaults follow the reference implementation's predict mode)."""

    classes: tuple[int, ...] | None = None  # keep only these class ids
    agnostic_nms: bool = False  # class-agnostic NMS
    stream: bool = False  # return a generator (constant memory) instead of a list
    vid_stride: int = 1  # use every n-th video frame
    save: bool = False  # save annotated images/videos
    save_txt: bool = False  # save YOLO-format label files
    save_conf: bool = False  # add confidence to saved label rows
    save_crop: bool = False  # save each box as a crop in <run>/crops/<class name>/
    line_width: int | None = None  # box line width in pixels (None: from the image size)
    show_labels: bool = True
    show_conf: bool = True

    def check(self) -> None:
        super().check()
        for class_id in self.classes or ():
            check_range("classes", class_id, ge=0, example=0)
        self.check_range("vid_stride", ge=1)
        if self.line_width is not None:
            check_range("line_width", self.line_width, ge=1, le=MAX_IMGSZ, example=2)


@dataclass(frozen=True)
class ValConfig(InferenceConfig):
    """Validation settings (defaults follow the reference implementation's val mode)."""

    imgsz: int = 640
    batch: int = 16
    conf: float = 0.001
    name: str = "val"
    data: str = ""  # dataset YAML (or COCO JSON) path
    split: str = "val"  # train / val / test
    rect: bool = True  # rectangular (minimal padding) batches
    plots: bool = True
    save_json: bool = True
    workers: int = 0  # data-loading threads (0: in the main thread)

    def check(self) -> None:
        super().check()
        self.check_range("workers", ge=0)


@dataclass(frozen=True)
class ExportConfig(Settings):
    """Export settings: ``format`` onnx | safetensors | pt."""

    format: str = "onnx"
    file: str = ""  # output path; default: beside the weights (or ./<model>.<ext>)
    imgsz: int = 640  # traced input size (ONNX); any multiple of the stride with dynamic=True
    dynamic: bool = True  # ONNX: dynamic batch/height/width
    nms: bool = True  # ONNX, YOLO26: False exports the NMS-free end-to-end head instead
    half: bool = False  # fp16 tensors (safetensors / pt)
    int8: bool = False  # INT8 quantization (not available yet)
    opset: int = 17

    def check(self) -> None:
        if self.format not in EXPORT_FORMATS:
            raise ConfigError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {self.format!r}: pass "
                              "e.g. format='onnx'")
        check_imgsz("imgsz", self.imgsz)
        self.check_range("opset", ge=7)


@dataclass(frozen=True)
class InfoConfig(Settings):
    """Model summary settings."""

    model: str = ""
    detailed: bool = False
    imgsz: int = 640  # input size the GFLOPs are counted at
    verbose: bool = True

    def check(self) -> None:
        check_imgsz("imgsz", self.imgsz)


# --- keys, groups and building ------------------------------------------------------------------------------------
def config_keys(cls: type) -> list[str]:
    """Every key ``make_config(cls, ...)`` accepts, flat (a group's keys in place of the group), in field order."""
    return list(field_routes(cls))


def make_config(cls: type[C], overrides: dict[str, Any] | None = None, /, **kwargs: Any) -> C:
    """Build ``cls`` from ``overrides`` and ``kwargs``: keys validated, strings converted, values range-checked.

    Keys are flat (``mosaic``) or dotted through groups (``aug.mosaic``). Raises ``ConfigError`` (one line) for an
    unknown key, a value of the wrong type, or a value out of range.
    """
    values = {**(overrides or {}), **kwargs}
    routes = field_routes(cls)
    by_path = {".".join(path): path for path in routes.values()}
    tree: dict[str, Any] = {}
    for key, value in values.items():
        path = routes.get(key) or by_path.get(key)
        if path is None:
            raise ConfigError(unknown_key_message(key, list(routes), cls.__name__.removesuffix("Config").lower()))
        node = tree
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = value
    return construct_settings(cls, tree)


def unknown_key_message(key: str, known: list[str], mode: str) -> str:
    """One line for an unknown key: a reference-only setting says so; otherwise a close match or the valid keys."""
    if key in REFERENCE_ONLY:
        return f"{mode} setting '{key}' (of the reference implementation) is not supported by yolokit: " + \
            REFERENCE_ONLY[key]
    alias = ALIASES.get(key)
    close = [alias] if alias in known else difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(known)}"
    return f"unknown {mode} setting '{key}': {hint}"


