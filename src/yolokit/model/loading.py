"""What a ``YOLO(source)`` source is, and loading it: a model instance, a spec, a weights file (native or reference,
local, published or a URL), an exported ONNX / TorchScript file, or a ``registry://`` version.

:func:`load_source` returns a :class:`Loaded`: the PyTorch model (None for an exported file, then ``runtime`` is its
backend), the metadata, the task entry, the file read and the registry version. torch and the loaders are imported
on first use (``from yolokit import YOLO`` stays light).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolokit.errors import ConfigError, WeightsError
from yolokit.tasks import TaskSpec, get_task, task_for_head

if TYPE_CHECKING:  # pragma: no cover
    from yolokit.models.detector import DetectionModel

SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass
class Loaded:
    """What a source gave: ``model`` (None for an exported ONNX / TorchScript file, whose backend is ``runtime``),
    its ``metadata`` and ``task`` entry, the file read (``ckpt_path``) and the ``registry://`` version, if any."""

    model: DetectionModel | None
    task: TaskSpec
    metadata: dict[str, Any] = field(default_factory=dict)
    ckpt_path: Path | None = None
    runtime: Any = None
    registry_version: Any = None


def load_source(source: str | Path | DetectionModel, num_classes: int | None = None,
                task: str | None = None, *, trusted: bool = False) -> Loaded:
    """Load ``source`` (see :class:`yolokit.model.YOLO`); ``task`` (the task expected) must agree with its own,
    ``num_classes`` overrides the class count of a spec; ``trusted``: a TorchScript file not exported here."""
    import torch

    if isinstance(source, torch.nn.Module):
        metadata = dict(getattr(source, "metadata", {}) or {})
        found = getattr(source, "task", None) or metadata.get("task")
        return Loaded(source, pick_task(found, task, f"the {type(source).__name__} passed"), metadata)
    if not isinstance(source, (str, Path)):
        raise ConfigError(f"YOLO() expects a spec name, a file path or a DetectionModel, found {type(source)}")
    if isinstance(source, str) and source.startswith("registry://"):
        return load_registry(source, task)
    path = resolve_weights(source)
    if path is not None:
        return _load_file(path, task, trusted)
    from yolokit.models.spec import load_spec, spec_rows

    spec = load_spec(source)
    spec_task = pick_task(task_for_head(spec_rows(spec)[-1][2]).name, task, f"spec {source}")
    model = spec_task.load("build_model")(spec, num_classes=num_classes)
    model.metadata = {}
    return Loaded(model, spec_task)


def _load_file(path: Path, task: str | None, trusted: bool = False) -> Loaded:
    """A local weights file; an exported ONNX / TorchScript file gives its backend (predict and val only)."""
    from yolokit.export.torchscript import is_torchscript
    from yolokit.weights import detect_format, load_weights

    if is_torchscript(path) or detect_format(path) == "onnx":
        from yolokit.backends.onnxruntime_backend import OnnxRuntimeBackend
        from yolokit.backends.torchscript_backend import TorchScriptBackend

        runtime = TorchScriptBackend(path, trusted=trusted) if is_torchscript(path) else OnnxRuntimeBackend(path)
        return _of_runtime(runtime, task, str(path), path)
    return _of_model(load_weights(path), task, str(path), path)


def load_registry(uri: str, task: str | None) -> Loaded:
    """``registry://NAME:N`` / ``NAME@ALIAS`` / ``NAME``: the version's file, its sha256 checked on this load."""
    from yolokit.registry import load_uri

    loaded = load_uri(uri)
    version = loaded.version
    if loaded.onnx_bytes is not None:
        from yolokit.backends.onnxruntime_backend import OnnxRuntimeBackend

        return _of_runtime(OnnxRuntimeBackend(loaded.onnx_bytes), task, version.ref, loaded.path, version)
    return _of_model(loaded.model, task, version.ref, loaded.path, version)


def _of_model(model: DetectionModel, task: str | None, what: str, path: Path | None, version: Any = None) -> Loaded:
    """Loaded weights: their metadata, and the task it records (else the model's ``task`` attribute)."""
    metadata = dict(getattr(model, "metadata", {}) or {})
    found = metadata.get("task") or getattr(model, "task", None)
    return Loaded(model, pick_task(found, task, what), metadata, path, registry_version=version)


def _of_runtime(runtime: Any, task: str | None, what: str, path: Path | None, version: Any = None) -> Loaded:
    """An exported file's backend: no PyTorch model; metadata and task from the file."""
    metadata = dict(runtime.metadata)
    return Loaded(None, pick_task(metadata.get("task"), task, what), metadata, path, runtime, version)


def resolve_weights(source: str | Path) -> Path | None:
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


def pick_task(found: Any, wanted: str | None, what: str) -> TaskSpec:
    """The task entry of a loaded source; ``wanted`` (``YOLO(task=)``) must agree with it."""
    if not found:
        raise ConfigError(f"{what} does not say its task (no 'task' in its metadata or attributes): load a yolokit "
                          "model, weights file or spec")
    spec = get_task(str(found))
    if wanted is not None and wanted != spec.name:
        raise ConfigError(f"task={wanted!r} was asked for, but {what} is a {spec.name!r} model: drop task= or load "
                          f"a {wanted} model")
    return spec

