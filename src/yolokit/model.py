"""The ``YOLO`` facade: one object that holds a model's weights and runs every mode on them.

    model = YOLO("yolo26n.yaml")            # shipped spec, random init (scale from the name)
    model = YOLO("best.pt")                 # reference (Ultralytics) checkpoint, imported without executing code
    model = YOLO("yolo26n.safetensors")     # native weights with metadata
    model = YOLO("yolo26n.pt")              # published name or URL: downloaded once to the cache, then imported
    model.info()
    results = model("bus.jpg", conf=0.5)
    metrics = model.val(data="data.yaml")
    model.save("copy.safetensors")
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolokit.config import InfoConfig, PredictConfig, ValConfig, make_config
from yolokit.errors import ConfigError, WeightsError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from yolokit.eval.metrics import DetectionMetrics
    from yolokit.models.detector import DetectionModel
    from yolokit.predict.results import Results

SPEC_SUFFIXES = (".yaml", ".yml")


class YOLO:
    """A detection model and its metadata, with ``info``, ``predict``, ``val``, ``save`` and ``fuse``.

    Args:
        source: a shipped spec name (``"yolo26n.yaml"``, ``"yolov8s.yaml"``), a spec YAML path, a weights file
            (``.safetensors``, native ``.pt`` or a reference ``.pt``; the format is detected from the content), a
            published weights name (``"yolo26n.pt"``) or an ``http(s)://`` URL (downloaded to the cache), or a
            ``DetectionModel`` instance.
        num_classes: override the class count when building from a spec.
    """

    def __init__(self, source: str | Path | DetectionModel = "yolo26n.yaml", *, num_classes: int | None = None):
        self.source = source
        self.ckpt_path: Path | None = None
        self.metadata: dict[str, Any] = {}
        self._backends: dict[tuple[Any, ...], Any] = {}
        self.model = self._load(source, num_classes)

    def _load(self, source: str | Path | DetectionModel, num_classes: int | None) -> DetectionModel:
        import torch

        if isinstance(source, torch.nn.Module):
            self.metadata = dict(getattr(source, "metadata", {}) or {})
            return source
        if not isinstance(source, (str, Path)):
            raise ConfigError(f"YOLO() expects a spec name, a file path or a DetectionModel, found {type(source)}")
        path = self._resolve_weights(source)
        if path is not None:
            from yolokit.weights import load_weights

            model = load_weights(path)
            self.ckpt_path = path
            self.metadata = dict(getattr(model, "metadata", {}) or {})
            return model
        from yolokit.models.builder import build_model
        from yolokit.models.spec import load_spec

        model = build_model(load_spec(source), num_classes=num_classes)
        model.metadata = {}
        return model

    @staticmethod
    def _resolve_weights(source: str | Path) -> Path | None:
        """The local weights file for ``source`` (downloading URLs and published names), or None for a spec."""
        from yolokit.models.zoo import get_entry
        from yolokit.utils.http import is_url

        if is_url(source):
            from yolokit.weights.download import download_weights

            return download_weights(str(source))
        path = Path(source)
        if path.is_file():
            return None if path.suffix.lower() in SPEC_SUFFIXES else path
        if path.suffix.lower() in SPEC_SUFFIXES or not path.suffix:
            return None  # a spec: shipped name ('yolo26n.yaml', 'yolo26n') or a YAML path (errors name it)
        entry = get_entry(path.name) if str(source) == path.name else None
        if entry is None:
            raise WeightsError(
                f"weights file not found: '{source}': pass the path of a local .pt/.safetensors file, "
                "or a spec such as 'yolo26n.yaml' to start from random weights"
            )
        from yolokit.weights.download import download_weights

        try:
            return download_weights(entry.url, sha256=entry.sha256)
        except WeightsError as err:
            raise WeightsError(f"'{source}' is not a local file and downloading it failed: {err}") from None

    # --- properties -------------------------------------------------------------------------------------------
    @property
    def names(self) -> dict[int, str]:
        """Class id -> class name."""
        return dict(self.model.names)

    @property
    def task(self) -> str:
        return str(self.metadata.get("task", "detect"))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def __repr__(self) -> str:
        from yolokit.models.spec import model_display_name

        return f"YOLO({model_display_name(self.model.spec)}, nc={self.model.nc}, source={str(self.source)!r})"

    # --- modes ------------------------------------------------------------------------------------------------
    def info(self, detailed: bool = False, verbose: bool = True, imgsz: int = 640) -> tuple[int, int, int, float]:
        """Log ``"<Name> summary: L layers, P parameters, G gradients, F GFLOPs"`` and return the tuple."""
        cfg = make_config(InfoConfig, detailed=detailed, verbose=verbose, imgsz=imgsz)
        return self.model.info(verbose=cfg.verbose, detailed=cfg.detailed, imgsz=cfg.imgsz)

    def fuse(self) -> YOLO:
        """Fold every BatchNorm into its convolution (inference only; outputs unchanged)."""
        self.model.fuse()
        self._backends.clear()
        return self

    def predict(self, source: Any, stream: bool = False, **overrides: Any) -> list[Results] | Iterator[Results]:
        """Detect objects in ``source`` (path, dir, glob, URL, array, PIL image, tensor, video).

        Returns a list of ``Results``, or a generator with constant memory when ``stream=True``.
        Settings are those of ``PredictConfig`` (``conf``, ``iou``, ``imgsz``, ``classes``, ``nms``, ``save``...).
        """
        from yolokit.predict.predictor import Predictor

        cfg = make_config(PredictConfig, overrides, stream=stream)
        predictor = Predictor(self._backend(cfg.device, cfg.half, cfg.engine), cfg)
        return predictor.stream(source) if cfg.stream else predictor.predict(source)

    __call__ = predict

    def val(self, data: str | Path | None = None, **overrides: Any) -> DetectionMetrics:
        """Measure mAP on a dataset split; returns the metrics and saves JSON + plots to ``runs/val``."""
        from yolokit.eval.validator import validate

        if data is None:
            data = self.metadata.get("provenance", {}).get("train_args", {}).get("data")
            if not data:
                raise ConfigError("val needs a dataset: pass data='path/to/data.yaml'")
        cfg = make_config(ValConfig, overrides, data=str(data))
        return validate(self._backend(cfg.device, cfg.half, cfg.engine), cfg)

    def save(self, path: str | Path, half: bool = False) -> Path:
        """Save the weights with their metadata (``.safetensors`` or native ``.pt``, chosen by the suffix)."""
        from yolokit.weights import save_weights

        return save_weights(self.model, path, half=half, metadata=self.metadata or None)

    # --- internals --------------------------------------------------------------------------------------------
    def _backend(self, device: str, half: bool, engine: str = "auto") -> Any:
        """The inference backend for (device, half, engine), built once and reused while the model is unchanged."""
        # Parameters' in-place version counters move on load_state_dict, optimizer steps and fuse(): a changed
        # model gets fresh backends instead of a stale fused copy; backends of other engines are kept meanwhile.
        state = (id(self.model), sum(int(t._version) for t in self.model.state_dict(keep_vars=True).values()))
        self._backends = {k: v for k, v in self._backends.items() if k[-1] == state}
        key = (device, half, engine, state)
        if key not in self._backends:
            from yolokit.predict.backend import create_backend

            self._backends[key] = create_backend(self.model, device, half, engine)
        return self._backends[key]
