"""The task table: everything task-specific the facade and the CLI use, in one explicit registry.

``YOLO`` reads the task of what it loads (the weights' metadata ``task``, a model's ``task`` attribute, or the head
of a spec) and takes the model builder, predictor, validator, trainer, result types and settings classes from that
task's :class:`TaskSpec`. Nothing outside this table decides by task. Entries name their implementations lazily
(``"module:attribute"`` strings, imported on first use), so this module imports nothing heavy and
``import yolokit`` stays free of torch. A new task is one :func:`register_task` call::

    register_task(TaskSpec(
        name="classify", heads=("Classify",),
        build_model="yolokit.models.builder:build_classifier", ...))

Registering a name twice raises ``ConfigError`` (as torchvision's ``register_model`` refuses duplicates); an
unknown name raises a one-line ``ConfigError`` that lists the known tasks.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from yolokit.errors import ConfigError

__all__ = ["TaskSpec", "register_task", "get_task", "task_names", "task_for_head", "resolve"]

Ref = str | Callable[..., Any]  # "package.module:attribute", or the object itself


@dataclass(frozen=True)
class TaskSpec:
    """What one task plugs into the facade. Every reference is a ``"module:attribute"`` string or the object.

    Attributes:
        name: the task name stored in weights metadata (``"detect"``).
        heads: spec layer types of the last (head) layer that mark a spec as this task (``("Detect",)``).
        build_model: ``(spec: dict, num_classes: int | None = None) -> nn.Module`` (the module has ``task``).
        predictor: class ``(backend, config) -> obj`` with ``predict(source) -> list[Results]`` and ``stream``.
        validator: ``(backend, config) -> metrics``.
        trainer: ``(model, config, *, parent: str | Path | None = None) -> (model, summary dict)``.
        results: the per-image result type the predictor returns.
        metrics: the type the validator returns.
        predict_config, val_config, train_config: the settings dataclasses of each mode (see ``yolokit.config``).
        description: one line for help texts.
    """

    name: str
    heads: tuple[str, ...]
    build_model: Ref
    predictor: Ref
    validator: Ref
    trainer: Ref
    results: Ref
    metrics: Ref
    predict_config: Ref
    val_config: Ref
    train_config: Ref
    description: str = ""

    def load(self, role: str) -> Any:
        """The object behind ``role`` (a field name: ``"predictor"``, ``"train_config"``...), imported now."""
        if role not in _ROLES:
            raise ConfigError(f"task entry has no role {role!r}: expected one of {', '.join(_ROLES)}")
        return resolve(getattr(self, role), what=f"{role} of task '{self.name}'")


_ROLES = tuple(f.name for f in dataclasses.fields(TaskSpec) if f.name not in ("name", "heads", "description"))


def resolve(ref: Ref, what: str = "reference") -> Any:
    """Import ``"module:attribute"`` (or return a non-string ``ref`` as is).

    A module that does not exist in this install is a one-line ``ConfigError`` naming it; errors raised while
    importing an existing module (a missing optional dependency inside it, say) propagate unchanged.
    """
    if not isinstance(ref, str):
        return ref
    module_name, sep, attribute = ref.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"{what}: expected 'package.module:attribute', found {ref!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and (module_name == error.name or module_name.startswith(error.name + ".")):
            raise ConfigError(f"{what} is not available in this yolokit install ({module_name} is missing): "
                              "update yolokit") from None
        raise
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigError(f"{what}: {module_name} has no attribute {attribute!r}") from None


class TaskRegistry:
    """Task name -> :class:`TaskSpec`; duplicates refused. The package's table is the module-level ``TASKS``."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskSpec] = {}

    def register(self, spec: TaskSpec) -> TaskSpec:
        if not isinstance(spec, TaskSpec):
            raise ConfigError(f"register_task expects a TaskSpec, found {type(spec).__name__}")
        if spec.name in self._tasks:
            raise ConfigError(f"task '{spec.name}' is already registered: pick another name")
        for head in spec.heads:
            owner = next((t.name for t in self._tasks.values() if head in t.heads), None)
            if owner is not None:
                raise ConfigError(f"head type '{head}' already marks task '{owner}': one head type, one task")
        self._tasks[spec.name] = spec
        return spec

    def get(self, name: str) -> TaskSpec:
        if name not in self._tasks:
            raise ConfigError(f"unknown task {name!r}: yolokit knows {', '.join(self.names())}")
        return self._tasks[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._tasks)

    def for_head(self, head_type: str) -> TaskSpec:
        short = head_type.rsplit(".", 1)[-1] if isinstance(head_type, str) else head_type
        for spec in self._tasks.values():
            if short in spec.heads:
                return spec
        known = ", ".join(f"{h} ({t.name})" for t in self._tasks.values() for h in t.heads)
        raise ConfigError(f"no task has head type {head_type!r}: the spec's last layer must be one of {known}")


TASKS = TaskRegistry()


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add ``spec`` to the package's task table; a name already registered raises ``ConfigError``."""
    return TASKS.register(spec)


def get_task(name: str) -> TaskSpec:
    """The entry for ``name``; an unknown name raises a one-line ``ConfigError`` listing the known tasks."""
    return TASKS.get(name)


def task_names() -> tuple[str, ...]:
    """Registered task names, in registration order."""
    return TASKS.names()


def task_for_head(head_type: str) -> TaskSpec:
    """The task whose ``heads`` hold a spec's last layer type (``"Detect"`` -> detect)."""
    return TASKS.for_head(head_type)


register_task(TaskSpec(
    name="detect",
    heads=("Detect",),
    build_model="yolokit.models.builder:build_model",
    predictor="yolokit.predict.predictor:Predictor",
    validator="yolokit.eval.validator:validate",
    trainer="yolokit.train.api:train",
    results="yolokit.predict.results:Results",
    metrics="yolokit.eval.metrics:DetectionMetrics",
    predict_config="yolokit.config:PredictConfig",
    val_config="yolokit.config:ValConfig",
    train_config="yolokit.train.config:TrainConfig",
    description="object detection: boxes with a class and a score",
))

register_task(TaskSpec(
    name="classify",
    heads=("Classify",),
    build_model="yolokit.models.classifier:build_classifier",
    predictor="yolokit.predict.classify:ClassifyPredictor",
    validator="yolokit.eval.classify:validate_classifier",
    trainer="yolokit.train.classify:train",
    results="yolokit.predict.classify_results:ClassifyResults",
    metrics="yolokit.eval.classify_metrics:ClassifyMetrics",
    predict_config="yolokit.config:PredictConfig",
    val_config="yolokit.config:ValConfig",
    train_config="yolokit.train.classify:ClassifyTrainConfig",
    description="image classification: one class distribution per image",
))
