"""The ``YOLO`` class: one object that holds a model's weights and runs every mode on them (see :mod:`yolokit.model`).

What a source is and how it loads is :mod:`yolokit.model.loading`; the settings checks and defaults that need the
model are :mod:`yolokit.model.settings`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolokit.config import ExportConfig, InfoConfig, make_config
from yolokit.errors import ConfigError
from yolokit.model.loading import load_source
from yolokit.model.settings import check_device_present, check_file_backend, defaults_note, fit_to_model, recorded_imgsz
from yolokit.tasks import TaskSpec, get_task
from yolokit.utils.log import logged

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from yolokit.eval.metrics import DetectionMetrics
    from yolokit.models.detector import DetectionModel
    from yolokit.predict.results import Results

logger = logging.getLogger(__name__)
EXPORT_FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript", "safetensors": ".safetensors", "pt": ".pt"}


class YOLO:
    """A detection model and its metadata, with ``info``, ``predict``, ``val``, ``save`` and ``fuse``.

    Args:
        source: a shipped spec name (``"yolo26n.yaml"``, ``"yolov8s.yaml"``), a spec YAML path, a weights file
            (``.safetensors``, native ``.pt`` or a reference ``.pt``; the format is detected from the content), a
            published weights name (``"yolo26n.pt"``) or an ``http(s)://`` URL (downloaded to the cache), a
            ``DetectionModel`` instance, or an ``.onnx`` file written by yolokit's export (then ``model.model`` is
            None, ``model.runtime`` the ONNX Runtime backend, and only ``predict`` / ``val`` are available).
        num_classes: override the class count when building from a spec.
        task: the task expected (``"detect"``); a source of another task is a ``ConfigError``. Default: the
            source's own task (weights metadata, the model's ``task``, or the spec's head layer).
        trusted: load a TorchScript file yolokit did not export on this machine. Its code runs when it is loaded:
            only for a file from a source you trust (otherwise ``UntrustedCodeError``, and nothing runs).
    """

    def __init__(self, source: str | Path | DetectionModel = "yolo26n.yaml", *, num_classes: int | None = None,
                 task: str | None = None, trusted: bool = False):
        self.source = source
        self.ckpt_path: Path | None = None
        self.metadata: dict[str, Any] = {}
        self.runtime: Any = None  # an OnnxRuntimeBackend when loaded from an .onnx file
        self.registry_version: Any = None  # the yolokit.registry Version when loaded from registry://
        self._backends: dict[tuple[Any, ...], Any] = {}
        self._device: str | None = None  # set by to(): the default device of predict and val
        if task is not None:
            get_task(task)  # an unknown name fails before anything is read
        self._task: TaskSpec
        self.model = self._load(source, num_classes, task, trusted)

    def _load(self, source: str | Path | DetectionModel, num_classes: int | None,
              task: str | None, trusted: bool = False) -> DetectionModel | None:
        """Load ``source`` (:func:`yolokit.model.loading.load_source`) and hold what it gave; returns the model."""
        loaded = load_source(source, num_classes, task, trusted=trusted)
        self.metadata, self._task, self.ckpt_path = loaded.metadata, loaded.task, loaded.ckpt_path
        self.runtime, self.registry_version = loaded.runtime, loaded.registry_version
        return loaded.model

    # --- properties -------------------------------------------------------------------------------------------
    @property
    def names(self) -> dict[int, str]:
        """Class id -> class name."""
        return self.runtime.names if self.is_onnx else dict(self.model.names)

    @property
    def task(self) -> str:
        """The task name (``"detect"``): the key of this model's entry in :mod:`yolokit.tasks`."""
        return self._task.name

    @property
    def task_spec(self) -> TaskSpec:
        """This model's entry in the task table (builder, predictor, validator, trainer, settings classes)."""
        return self._task

    @property
    def is_onnx(self) -> bool:
        """Loaded from an ``.onnx`` file: no PyTorch weights (``model`` is None), predict and val only."""
        return self.runtime is not None

    @property
    def device(self) -> torch.device:
        return self.runtime.device if self.is_onnx else next(self.model.parameters()).device

    def __repr__(self) -> str:
        from yolokit.models.spec import model_display_name

        spec = self.metadata.get("spec") if self.is_onnx else self.model.spec
        name = model_display_name(spec) if isinstance(spec, dict) else "ONNX model"
        return f"YOLO({name}, nc={len(self.names)}, source={str(self.source)!r})"

    def _torch_model(self, mode: str) -> DetectionModel:
        """``self.model``, or a one-line error for a model loaded from an ONNX file (no PyTorch weights)."""
        if self.is_onnx:
            raise ConfigError(f"{mode} needs PyTorch weights, but {self.ckpt_path} is an ONNX model (predict and val "
                              "only): load the .safetensors or .pt file it was exported from")
        return self.model

    # --- modes ------------------------------------------------------------------------------------------------
    @logged
    def info(self, detailed: bool = False, verbose: bool = True, imgsz: int = 640) -> tuple[int, int, int, float]:
        """Log ``"<Name> summary: L layers, P parameters, G gradients, F GFLOPs"`` (GFLOPs at ``imgsz``, 640 as in
        the reference) and the line naming the ``imgsz`` predict and val use by default; return the tuple."""
        cfg = make_config(InfoConfig, detailed=detailed, verbose=verbose, imgsz=imgsz)
        summary = self._torch_model("info").info(verbose=cfg.verbose, detailed=cfg.detailed, imgsz=cfg.imgsz)
        if cfg.verbose:
            logger.info("%s; GFLOPs counted at imgsz=%s", self._defaults_note(), cfg.imgsz)
        return summary

    def to(self, device: Any) -> YOLO:
        """Move the weights to ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, an index or a
        ``torch.device``), which becomes the default ``device`` of predict and val; returns self."""
        from yolokit.config import check_device

        name = check_device("device", str(device))
        check_device_present(name)
        self._torch_model("to").to(name)
        self._backends.clear()
        self._device = name
        return self

    def fuse(self) -> YOLO:
        """Fold every BatchNorm into its convolution (inference only; outputs unchanged)."""
        self._torch_model("fuse").fuse()
        self._backends.clear()
        return self

    @logged
    def predict(self, source: Any, stream: bool = False, **overrides: Any) -> list[Results] | Iterator[Results]:
        """Detect objects in ``source`` (path, dir, glob, URL, array, PIL image, tensor, video).

        Returns a list of ``Results``, or a generator with constant memory when ``stream=True``.
        Settings are those of ``PredictConfig`` (``conf``, ``iou``, ``imgsz``, ``classes``, ``nms``, ``save``...);
        ``imgsz`` defaults to the size the weights record (their training or export size), as in the reference.
        """
        overrides = {**self._family_defaults("predict"), **overrides}
        cfg = self._checked(make_config(self._task.load("predict_config"), self._defaults(overrides), stream=stream))
        predictor = self._task.load("predictor")(self._backend(cfg.device, cfg.half, cfg.engine), cfg)
        return predictor.stream(source) if cfg.stream else predictor.predict(source)

    __call__ = predict

    @logged
    def val(self, data: str | Path | None = None, **overrides: Any) -> DetectionMetrics:
        """Measure mAP on a dataset split; returns the metrics and saves JSON + plots to ``runs/val``.

        ``imgsz`` defaults to the size the weights record (their training or export size), as in the reference.
        """
        cfg_cls = self._task.load("val_config")
        if data is None:
            make_config(cfg_cls, overrides)  # bad settings are named before a missing dataset
            data = self.metadata.get("provenance", {}).get("train_args", {}).get("data")
            if not data:
                raise ConfigError("val needs a dataset: pass data='path/to/data.yaml'")
        overrides = {**self._family_defaults("val"), **overrides}
        cfg = self._checked(make_config(cfg_cls, self._defaults(overrides, square=True), data=str(data)))
        return self._task.load("validator")(self._backend(cfg.device, cfg.half, cfg.engine), cfg)

    @logged
    def train(self, data: str | Path | None = None, **overrides: Any) -> dict[str, Any]:
        """Train these weights on ``data`` (or continue a killed run: ``resume=RUN_DIR``); afterwards this object
        holds the best weights (``ckpt_path``: the run's ``weights/best.safetensors``).

        Settings are those of ``TrainConfig`` (``epochs``, ``imgsz``, ``batch``, ``optimizer``, ``lr0``, ``freeze``,
        ``pretrained``, ``seed``, ``workers``, ``patience``...; see docs/training.md). ``register="NAME"`` (and
        optionally ``registry=PATH``) registers the best weights as the next ``NAME:N``, a child of the weights the
        run started from. Returns the best weights' metrics ``{precision, recall, map50, map, fitness, best_epoch,
        epochs, save_dir, weights}``.
        """
        values = {**overrides, **({"data": str(data)} if data is not None else {})}
        if "model" not in values and (self.ckpt_path is not None or isinstance(self.source, (str, Path))):
            values["model"] = str(self.ckpt_path or self.source)
        cfg = make_config(self._task.load("train_config"), values)
        parent = self.ckpt_path
        best, metrics = self._task.load("trainer")(self._torch_model("train"), cfg, parent=parent)
        self.model, self.metadata, self.ckpt_path = best, dict(best.metadata), Path(metrics["weights"])
        self.registry_version = None
        self._backends.clear()
        from yolokit.utils.dist import is_main_process

        if cfg.register and is_main_process():  # one registration per run, from rank 0 (which wrote the weights)
            from yolokit.registry import register_trained

            register_trained(cfg.register, self.ckpt_path, parent_weights=parent, registry=cfg.registry or None)
        return metrics

    def save(self, path: str | Path, half: bool = False) -> Path:
        """Save the weights with their metadata (``.safetensors`` or native ``.pt``, chosen by the suffix)."""
        from yolokit.weights import save_weights

        return save_weights(self._torch_model("save"), path, half=half, metadata=self.metadata or None)

    @logged
    def export(self, format: str = "onnx", **overrides: Any) -> Path:  # noqa: A002 - the familiar keyword
        """Write the model as ``format`` (``onnx``, ``safetensors`` or ``pt``) and return the file's path.

        Settings are those of ``ExportConfig`` (``file``, ``imgsz``, ``dynamic``, ``nms``, ``half``, ``opset``).
        The default file is the weights' path with the new suffix (in the working directory for downloaded weights,
        ``./<model name>.<ext>`` for a model built from a spec, ``./NAME-vN.<ext>`` for a ``registry://`` model). The
        ONNX file carries names, stride and head in its metadata: ``YOLO("x.onnx")`` predicts with it.
        ``register="NAME"`` (and optionally ``registry=PATH``) registers the written file as a child of the version
        it was exported from (registering the source weights first if they are not registered yet).
        """
        register, registry = overrides.pop("register", None), overrides.pop("registry", None)
        if register:  # the registry folder is checked before the export runs, not after it
            from yolokit.registry.names import default_registry_path
            from yolokit.utils.io import check_output_dir

            check_output_dir(default_registry_path(registry or None), "registry folder", "pass registry=PATH")
        path = self._export(format, overrides)
        if register:
            from yolokit.registry import register_export

            same = self.registry_version is not None and registry is None
            register_export(str(register), path, source_version=self.registry_version.ref if same else None,
                            source_path=None if same else self.ckpt_path, registry=registry or None)
        return path

    def _export(self, format: str, overrides: dict[str, Any]) -> Path:  # noqa: A002
        cfg = make_config(ExportConfig, overrides, format=format)  # format checked there (config.EXPORT_FORMATS)
        model = self._torch_model("export")
        path = Path(cfg.file) if cfg.file else self._default_export_path(EXPORT_FORMATS[cfg.format])
        if cfg.format not in ("onnx", "torchscript"):
            if path.resolve() == (self.ckpt_path.resolve() if self.ckpt_path else None):
                raise ConfigError(f"export would overwrite the weights it reads ({path}): pass e.g. "
                                  f"file='{path.stem}-export{path.suffix}'")
            return self.save(path, half=cfg.half)
        from yolokit.deploy.pipeline import export_model, int8_path

        path = int8_path(path) if cfg.int8 and not cfg.file else path  # checked: parity, latency, mAP, INT8 budget
        return export_model(model, cfg, path, source=self.ckpt_path).path

    @logged
    def benchmark(self, data: str | Path | None = None, imgsz: int = 640, **options: Any) -> list[dict[str, Any]]:
        """The format table (PyTorch fp32, ONNX fp32/fp16/INT8, TorchScript: size, latency, mAP, drop vs PyTorch);
        logs it and writes JSON (``yolokit.deploy.benchmark.benchmark`` has the options)."""
        from yolokit.deploy.benchmark import benchmark

        return benchmark(self._torch_model("benchmark"), data=str(data) if data else None, imgsz=imgsz,
                         source=self.ckpt_path, **options)

    # --- internals --------------------------------------------------------------------------------------------
    def _default_export_path(self, suffix: str) -> Path:
        """Beside the weights file; in the working directory for downloaded weights (never into the cache)."""
        if self.registry_version is not None:  # never into the registry's blob store
            return Path(f"{self.registry_version.name}-v{self.registry_version.number}{suffix}")
        if self.ckpt_path is not None:
            from yolokit.utils.io import cache_root

            downloaded = cache_root().resolve() in self.ckpt_path.resolve().parents
            return Path(self.ckpt_path.name).with_suffix(suffix) if downloaded else self.ckpt_path.with_suffix(suffix)
        from yolokit.models.spec import model_display_name

        return Path(model_display_name(self.model.spec).lower() + suffix)

    def _checked(self, cfg: Any) -> Any:
        """The checks of inference settings that need the model, before any work (:func:`settings.fit_to_model`):
        ``imgsz`` rounded up to a multiple of the stride (with a warning), ``classes`` within the model's classes,
        the device present (ONNX files and the onnxruntime engine check their device themselves)."""
        stride = int(self.runtime.stride) if self.is_onnx else int(self.model.stride.max())
        return fit_to_model(cfg, self.names, stride, check_device=not self.is_onnx and cfg.engine != "onnxruntime")

    def _defaults(self, overrides: dict[str, Any], square: bool = False) -> dict[str, Any]:
        """``overrides`` plus what the loaded file implies and the user did not set: the device of ``to()``, the
        weights' recorded ``imgsz`` (an int, or the long side when ``square``) and an ONNX file's head."""
        overrides = self._file_head(overrides)
        if self._device is not None and "device" not in overrides:
            overrides = {**overrides, "device": self._device}
        imgsz = None if "imgsz" in overrides else recorded_imgsz(self.metadata, square)
        return overrides if imgsz is None else {**overrides, "imgsz": imgsz}

    def _family_defaults(self, mode: str) -> dict[str, Any]:
        """The NMS defaults of the model's family for ``mode`` that the user did not override (YOLOv5: the
        original's iou 0.45 / max_det 1000 for predict, iou 0.6 for val; others: none)."""
        from yolokit.models.yolov5 import inference_defaults

        spec = self.metadata.get("spec") if self.is_onnx else getattr(self.model, "spec", None)
        return inference_defaults(spec, mode)

    def _defaults_note(self) -> str:
        """``"predict/val default imgsz=320 (recorded in the weights)"``, plus a recorded val dataset."""
        return defaults_note(self.metadata)

    def _file_head(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """For an ONNX file, default ``nms`` to the head it holds (it has one only); other models: unchanged."""
        if self.is_onnx and "nms" not in overrides and "end2end" not in overrides:
            return {**overrides, "nms": not self.runtime.nms_free}
        return overrides

    def _backend(self, device: str, half: bool, engine: str = "auto") -> Any:
        """The inference backend for (device, half, engine), built once and reused while the model is unchanged."""
        if self.is_onnx:
            return self._file_backend(device, half, engine)
        # Parameters' in-place version counters move on load_state_dict, optimizer steps and fuse(): a changed
        # model gets fresh backends instead of a stale fused copy; backends of other engines are kept meanwhile.
        state = (id(self.model), sum(int(t._version) for t in self.model.state_dict(keep_vars=True).values()))
        self._backends = {k: v for k, v in self._backends.items() if k[-1] == state}
        key = (device, half, engine, state)
        if key not in self._backends:
            from yolokit.backends import create_backend

            self._backends[key] = create_backend(self.model, device, half, engine)
        return self._backends[key]

    def _file_backend(self, device: str, half: bool, engine: str) -> Any:
        """The ONNX Runtime backend of a model loaded from an ``.onnx`` file (CPU, fp32)."""
        check_file_backend(device, half, engine, self.ckpt_path)
        return self.runtime
