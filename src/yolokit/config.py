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
    "unknown_key_message", "close_matches", "edit_distance",
]  # fmt: skip

C = TypeVar("C")

ENGINES = ("auto", "eager", "channels_last", "jit", "onnxruntime")  # inference engines (see yolokit.backends)
EXPORT_FORMATS = ("onnx", "torchscript", "safetensors", "pt")
CALIB_METHODS = ("minmax", "percentile", "entropy")  # INT8 calibration (ONNX Runtime)

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
    "mode": "the mode is the first word: yolokit predict|val|export|info ... key=value",
    "time": "training length is set in epochs",
    "profile": "per-layer profiling is not available; see benchmarks/ for speed measurements",
    "compile": "torch.compile is not used; engine=jit traces and freezes the model instead",
    "channels_last": "use engine=channels_last",
    "multi_scale": "multi-scale training is not available",
    "dropout": "dropout is a classification-training setting yolokit does not have",
    "overlap_mask": "yolokit predicts boxes (no segmentation masks)",
    "mask_ratio": "yolokit predicts boxes (no segmentation masks)",
    "pose": "pose estimation is not supported",
    "kobj": "pose estimation is not supported",
    "rle": "pose estimation is not supported",
    "angle": "oriented boxes (obb) are not supported",
    "workspace": "TensorRT export is not available; export format=onnx",
    "quantize": "export int8=True",
    "keras": "Keras/TensorFlow export is not available; export format=onnx",
    "distill_model": "distillation is not available",
    "bgr": "images are always fed as RGB, as the weights expect",
    "cutmix": "training augmentations are mosaic, mixup, HSV, flips and affine (see docs/training.md)",
    "copy_paste": "copy-paste needs segmentation masks, which yolokit does not train",
    "copy_paste_mode": "copy-paste needs segmentation masks, which yolokit does not train",
    "auto_augment": "classification auto-augment is not available",
    "erasing": "classification random erasing is not available",
    "cls_remap": "class rows are matched by name when fine-tuning (see docs/training.md)",
    "task": "the task comes from the weights; pass YOLO(source, task=...) or 'yolokit TASK MODE ...' to insist",
    "source": "the source is the first argument: model.predict(source) (CLI: yolokit predict source=...)",
    "cache": "images are read from disk (there is no cache= setting)",
    **dict.fromkeys(("dis", "cls_pw", "dlog", "dgrad", "dlam"), "a loss setting yolokit's losses do not have"),
}
# Names other YOLO code bases use for yolokit's keys.
ALIASES = {"conf_thres": "conf", "conf_thresh": "conf", "confidence": "conf", "iou_thres": "iou", "iou_thresh": "iou",
           "img_size": "imgsz", "img": "imgsz", "image_size": "imgsz", "batch_size": "batch",
           "max_detections": "max_det", "agnostic": "agnostic_nms", "line_thickness": "line_width",
           "weights": "model"}



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
    plots: bool = True  # confusion matrix, PR/F1/P/R curves and batch mosaics in the run directory
    save_json: bool = True  # write predictions.json (COCO results format)
    workers: int = 0  # data-loading threads (0: in the main thread)

    def check(self) -> None:
        super().check()
        self.check_range("workers", ge=0)


@dataclass(frozen=True)
class ExportConfig(Settings):
    """Export settings: ``format`` onnx | torchscript | safetensors | pt (INT8, FP16, embedded NMS: ONNX)."""

    format: str = "onnx"  # onnx | torchscript | safetensors | pt
    file: str = ""  # output path; default: beside the weights (or ./<model>.<ext>; INT8: <stem>_int8.onnx)
    imgsz: int = 640  # traced input size (ONNX); any multiple of the stride with dynamic=True
    dynamic: bool = True  # ONNX: dynamic batch/height/width
    nms: bool = True  # ONNX, YOLO26: False exports the NMS-free end-to-end head instead
    half: bool = False  # fp16: ONNX float16 inside (float32 in/out), or fp16 tensors (safetensors / pt)
    int8: bool = False  # ONNX INT8 post-training quantization (needs data=); mAP budget enforced
    opset: int = 17  # ONNX opset version
    data: str = ""  # dataset YAML: INT8 calibration (train) and budget (val) images; the parity check's image
    calib_images: int = 300  # INT8: calibration images from the train split (fewer: a warning, recorded)
    calib_method: str = "minmax"  # INT8: minmax | percentile | entropy
    int8_budget: float = 1.0  # INT8: largest mAP50-95 drop vs FP32, in points (1.0 = 0.01 mAP)
    force: bool = False  # INT8: write the file even when the budget is not met (flagged in its metadata)
    embed_nms: bool = False  # ONNX: NMS in the graph, output (B, max_det, 6) [x1, y1, x2, y2, score, class]
    conf: float = 0.25  # embedded NMS: score threshold (baked into the file)
    iou: float = 0.7  # embedded NMS: IoU threshold
    max_det: int = 300  # embedded NMS: detections per image
    agnostic_nms: bool = False  # embedded NMS: one NMS over all classes
    verbose: bool = True  # print what export checks and writes (False: warnings only)

    def check(self) -> None:
        if self.format not in EXPORT_FORMATS:
            raise ConfigError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {self.format!r}: pass "
                              "e.g. format='onnx'")
        check_imgsz("imgsz", self.imgsz)
        self.check_range("opset", ge=7)
        self.check_range("calib_images", ge=1)
        self.check_choice("calib_method", CALIB_METHODS)
        self.check_range("int8_budget", ge=0)
        self.check_range("conf", ge=0, le=1)
        self.check_range("iou", ge=0, le=1)
        self.check_range("max_det", ge=1)
        self._check_combinations()

    def _check_combinations(self) -> None:
        onnx_only = [key for key in ("int8", "embed_nms") if getattr(self, key)]
        if onnx_only and self.format != "onnx":
            raise ConfigError(f"{onnx_only[0]}=True is an ONNX export option, got format={self.format!r}: pass "
                              "format=onnx")
        if self.int8 and self.half:
            raise ConfigError("int8=True and half=True exclude each other: pass one of them")
        if self.int8 and not self.data:
            raise ConfigError("int8=True needs data=path/to/data.yaml (calibration images from its train split, "
                              "the accuracy budget on its val split)")
        if self.embed_nms and not self.nms:
            raise ConfigError("embed_nms=True appends NMS to the one-to-many head, got nms=False (the NMS-free head, "
                              "whose output is already final): drop embed_nms or pass nms=True")
        if self.half and self.format == "torchscript":
            raise ConfigError("half=True is not available for format=torchscript (fp16 TorchScript runs on GPUs "
                              "only): export fp32, or format=onnx half=True")


@dataclass(frozen=True)
class InfoConfig(Settings):
    """Model summary settings."""

    model: str = ""
    detailed: bool = False  # also one row per parameter tensor (shape, mean, std, dtype)
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


def unknown_key_message(key: str, known: list[str], mode: str, elsewhere: dict[str, list[str]] | None = None) -> str:
    """One line for an unknown key, most specific first: a key of another mode (``elsewhere``: mode -> keys) says
    where it belongs; a reference-only setting says it is not supported and what to do; a known alias or a key a
    typo away (:func:`close_matches`) is suggested; otherwise the valid keys are listed."""
    owners = [other for other, keys in (elsewhere or {}).items() if other != mode and key in keys]
    if owners:
        where = owners[0] if len(owners) == 1 else f"{', '.join(owners[:-1])} and {owners[-1]}"
        return f"{mode} has no setting '{key}': it is a setting of {where} (yolokit {owners[0]} ... {key}=...)"
    if key in REFERENCE_ONLY:
        return f"{mode} setting '{key}' (of the reference implementation) is not supported by yolokit: " + \
            REFERENCE_ONLY[key]
    alias = ALIASES.get(key)
    close = [alias] if alias in known else close_matches(key, known)
    hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(known)}"
    return f"unknown {mode} setting '{key}': {hint}"


def close_matches(word: str, candidates: list[str], n: int = 1) -> list[str]:
    """The ``n`` candidates a typo away from ``word``, closest first: at most 1 edit (insert, delete, replace, or
    swap two neighbours) for words up to 4 characters, 2 up to 8, 3 beyond. ``cnf`` -> ``conf``, ``imgsize`` ->
    ``imgsz``; ``show`` -> nothing (``show_conf`` is 5 edits away), ``augment`` -> nothing."""
    limit = 1 if len(word) <= 4 else 2 if len(word) <= 8 else 3
    scored = [(edit_distance(word, c), -difflib.SequenceMatcher(None, word, c).ratio(), c) for c in candidates]
    return [c for d, _, c in sorted(s for s in scored if s[0] <= limit)][:n]


def edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, replacements and swaps of neighbours, each 1."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[-1]
