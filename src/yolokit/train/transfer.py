"""Start a training run from pretrained weights, for the same or another list of classes.

    model, report = prepare_for_training("yolo26n.safetensors", {0: "cat", 1: "dog"})
    # logs "Transferred 690/708 tensors from yolo26n.safetensors"
    #      "copied head rows for 2 classes matched by name: cat (15 -> 0), dog (16 -> 1)"

A fresh model with the dataset's class count is built from the source's spec (or from ``spec=``) and then:

1. every tensor whose name and shape match the source's is copied (BatchNorm statistics included);
2. the class-score rows of the head, i.e. the last 1x1 conv of every ``cv3`` / ``one2one_cv3`` branch (weight
   ``(nc, c_in, 1, 1)``, bias ``(nc,)``), are copied **by class name**: row ``j`` of the new model receives row
   ``i`` of the source when ``new_names[j] == old_names[i]``. Classes without a match keep the builder's fresh
   initialisation (random weight rows, the prior bias of ``Detect.bias_init``). With the same names in the same
   order this is the whole tensor; with the same names in another order the rows follow the names;
3. everything else keeps the builder's initialisation.

Rows can only be copied when the branch's input width is the same in both models: ``Detect`` widens the class
branch to ``min(nc, 100)`` channels when that exceeds the first level's channels (e.g. 80 classes on an n model),
and then the whole branch is re-initialised (the log says so). A source without class names (a bare safetensors
file) transfers its class-head tensors by shape only, as any other tensor.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolokit.errors import ConfigError, WeightsError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from yolokit.models.detector import DetectionModel

__all__ = ["TransferResult", "class_head_keys", "match_classes", "model_builder", "prepare_for_training"]

LOGGER = logging.getLogger(__name__)
MAX_LOGGED_NAMES = 8


@dataclass
class TransferResult:
    """What :func:`prepare_for_training` kept from the source.

    Attributes:
        transferred: model tensors whose every value came from the source (by name and shape, or head tensors
            whose every row was matched by name).
        total: tensors in the model's state_dict.
        skipped: tensors left entirely at the builder's initialisation (absent from the source, other shape, or
            head tensors with no class matched).
        partial: head tensors with some rows copied (matched classes) and the rest freshly initialised.
        class_map: new class id -> source class id, for the classes whose head rows were copied.
        source: a description of the source (its path, or the model's class name).
        source_sha256: sha256 of the source file (None for an in-memory model without a file).
    """

    transferred: int
    total: int
    skipped: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)
    class_map: dict[int, int] = field(default_factory=dict)
    source: str = ""
    source_sha256: str | None = None


@dataclass
class _Source:
    state_dict: dict[str, Any]
    spec: dict[str, Any] | None
    names: dict[int, str] | None
    label: str
    sha256: str | None


def _read_source(source: Any) -> _Source:
    """A DetectionModel, a ``YOLO`` facade, or a weights file (native or reference, read by the safe loader)."""
    import torch

    if isinstance(source, torch.nn.Module):
        return _Source(source.state_dict(), getattr(source, "spec", None), _names_of(source), type(source).__name__,
                       None)
    inner = getattr(source, "model", None)
    if isinstance(inner, torch.nn.Module):  # the YOLO facade
        path = getattr(source, "ckpt_path", None)
        sha = None
        if path is not None:
            from yolokit.utils.io import sha256_file

            sha = sha256_file(path)
        found = _read_source(inner)
        return _Source(found.state_dict, found.spec, found.names, str(path or found.label), sha)
    if isinstance(source, (str, Path)):
        from yolokit.weights import read_weights

        weights = read_weights(source)
        meta = weights.metadata
        names = {int(k): str(v) for k, v in meta["names"].items()} if meta.get("names") else None
        return _Source(weights.state_dict, meta.get("spec"), names, str(weights.path), weights.sha256)
    raise ConfigError(
        f"pretrained weights: expected a weights file path, a DetectionModel or a YOLO object, found "
        f"{type(source).__name__}; pass e.g. 'yolo26n.safetensors' or a reference .pt"
    )


def _names_of(model: Any) -> dict[int, str] | None:
    names = getattr(model, "names", None)
    return {int(k): str(v) for k, v in names.items()} if isinstance(names, Mapping) and names else None


def _check_names(data_names: Mapping[int, str] | Sequence[str]) -> dict[int, str]:
    """``{0: "cat", 1: "dog"}`` or ``["cat", "dog"]`` -> ``dict[int, str]`` with keys 0..n-1."""
    if isinstance(data_names, Mapping):
        names = {int(k): str(v) for k, v in data_names.items()}
    elif isinstance(data_names, Sequence) and not isinstance(data_names, str):
        names = {i: str(v) for i, v in enumerate(data_names)}
    else:
        found = type(data_names).__name__
        raise ConfigError(f"class names: expected a dict {{0: 'name', ...}} or a list, found {found}")
    if not names or sorted(names) != list(range(len(names))):
        raise ConfigError(
            f"class names: expected ids 0..n-1 (at least one class), found ids {sorted(names)[:10]}; "
            "fix 'names' in the dataset YAML"
        )
    return names


def match_classes(new_names: Mapping[int, str], old_names: Mapping[int, str]) -> dict[int, int]:
    """New class id -> old class id for every new class whose name (stripped, case-sensitive) equals an old one.

    Example: ``match_classes({0: "dog", 1: "star"}, {0: "cat", 1: "dog"}) == {0: 1}``. With duplicate old names
    the first (lowest id) wins.
    """
    first_id: dict[str, int] = {}
    for old_id in sorted(old_names):
        first_id.setdefault(str(old_names[old_id]).strip(), old_id)
    found = ((new_id, first_id.get(str(name).strip())) for new_id, name in sorted(new_names.items()))
    return {new_id: old_id for new_id, old_id in found if old_id is not None}


def class_head_keys(model: DetectionModel) -> list[tuple[str, str]]:
    """``(weight key, bias key)`` of the class-score conv (the last module) of every ``cv3`` / ``one2one_cv3``
    branch, e.g. ``("model.23.cv3.0.2.weight", "model.23.cv3.0.2.bias")``; weight ``(nc, c_in, 1, 1)``. For a
    classifier the ``Classify`` head's ``linear`` layer: ``("model.10.linear.weight", ...)``, weight ``(nc, 1280)``."""
    head = model.head
    module_names = {id(module): name for name, module in model.named_modules()}
    if hasattr(head, "linear"):  # Classify: one (nc, hidden) linear layer
        name = module_names[id(head.linear)]
        return [(f"{name}.weight", f"{name}.bias")]
    if hasattr(head, "anchors") and hasattr(head, "na"):  # YOLOv5 AnchorDetect: each level's output conv
        return [(f"{module_names[id(conv)]}.weight", f"{module_names[id(conv)]}.bias") for conv in head.m]
    branches = [head.cv3] + ([head.one2one_cv3] if getattr(head, "end2end", False) else [])
    keys = []
    for branch in branches:
        for level in branch:
            name = module_names[id(level[-1])]
            keys.append((f"{name}.weight", f"{name}.bias"))
    return keys


def _copy_rows(target: torch.Tensor, source: torch.Tensor, class_map: Mapping[int, int]) -> bool:
    """Copy ``source[old]`` into ``target[new]`` for every pair; False (nothing copied) if the rows differ in shape."""
    if tuple(source.shape[1:]) != tuple(target.shape[1:]):
        return False
    new_ids = list(class_map)
    old_ids = [class_map[i] for i in new_ids]
    if max(old_ids) >= source.shape[0]:
        return False
    target[new_ids] = source[old_ids].to(target.dtype)
    return True


def _head_rows(head: Any, found: Any, class_map: dict[int, int]) -> dict[int, int]:
    """Target row -> source row of a class-head tensor: ``class_map`` itself, or for a YOLOv5 head (rows
    ``anchor * (5 + nc) + k``) the box and objectness rows of every anchor plus its matched class rows."""
    if not hasattr(head, "na") or found is None or found.shape[0] % head.na:
        return class_map
    old_no, new_no = found.shape[0] // head.na, head.no
    rows = {}
    for a in range(head.na):
        rows.update({a * new_no + k: a * old_no + k for k in range(5)})
        rows.update({a * new_no + 5 + new: a * old_no + 5 + old for new, old in class_map.items()})
    return rows


def _transfer_head_rows(model: DetectionModel, src: _Source, class_map: dict[int, int], result: TransferResult,
                        head_keys: set[str]) -> None:
    """Row copies into the class-score tensors (in place); records transferred / partial / skipped names."""
    import torch

    target = model.state_dict()
    complete = len(class_map) == model.nc
    copied = 0
    with torch.no_grad():
        for key in sorted(head_keys, key=list(target).index):
            found = src.state_dict.get(key)
            rows = _head_rows(model.head, found, class_map)
            if rows and found is not None and _copy_rows(target[key], found, rows):
                copied += 1
                if complete:
                    result.transferred += 1
                else:
                    result.partial.append(key)
            else:
                if class_map and found is not None:
                    LOGGER.info("class-head rows not copied for %s: source rows %s, model rows %s (the class branch "
                                "has another width)", key, tuple(found.shape[1:]), tuple(target[key].shape[1:]))
                result.skipped.append(key)
    result.class_map = dict(class_map) if copied else {}


def _transfer_matching(model: DetectionModel, source: _Source, exclude: set[str]) -> TransferResult:
    """Copy every source tensor whose name and shape match the model's (except ``exclude``), in place."""
    import torch

    target = model.state_dict()
    result = TransferResult(transferred=0, total=len(target), source=source.label, source_sha256=source.sha256)
    with torch.no_grad():
        for key, tensor in target.items():
            found = source.state_dict.get(key)
            if key in exclude:
                continue
            if found is not None and tuple(found.shape) == tuple(tensor.shape):
                tensor.copy_(found.to(tensor.dtype))
                result.transferred += 1
            else:
                result.skipped.append(key)
    return result


def _log(result: TransferResult, new_names: Mapping[int, str], old_names: Mapping[int, str] | None) -> None:
    LOGGER.info("Transferred %d/%d tensors from %s", result.transferred, result.total, result.source)
    if result.class_map:
        pairs = ", ".join(f"{new_names[j]} ({i} -> {j})" for j, i in result.class_map.items())
        LOGGER.info("copied head rows for %d classes matched by name: %s", len(result.class_map), pairs)
    elif old_names is not None:
        LOGGER.info("no class name matches the pretrained classes: the class-score rows start fresh")
    if result.skipped:
        more = ", ..." if len(result.skipped) > MAX_LOGGED_NAMES else ""
        shown = ", ".join(result.skipped[:MAX_LOGGED_NAMES]) + more
        LOGGER.info("re-initialised %d tensors: %s", len(result.skipped), shown)
        LOGGER.debug("re-initialised tensors: %s", ", ".join(result.skipped))


def model_builder(spec: Any) -> Any:
    """The builder of the task whose head ends ``spec`` (``build_model`` for Detect, ``build_classifier``...)."""
    from yolokit.models.spec import load_spec, spec_rows
    from yolokit.tasks import task_for_head

    return task_for_head(spec_rows(load_spec(spec))[-1][2]).load("build_model")


def prepare_for_training(
    source: Any, data_names: Mapping[int, str] | Sequence[str], *, spec: Mapping[str, Any] | str | None = None,
    source_label: str | None = None,
) -> tuple[DetectionModel, TransferResult]:
    """A model for ``data_names`` initialised from pretrained weights (see the module docstring for the rules).

    Args:
        source: a ``DetectionModel``, a ``YOLO`` object, or a weights file (``.safetensors``, yolokit ``.pt``, or a
            reference ``.pt`` read by the restricted unpickler: nothing in it is executed).
        data_names: the dataset's classes, ``{0: "cat", ...}`` or a list.
        spec: architecture of the new model (a spec dict, shipped name or YAML path); default: the source's.
        source_label: how the log names the source (e.g. the file a model was loaded from); default: its path or
            class name.

    Returns:
        ``(model, result)``: the new model in train mode on the CPU, ``names`` set to ``data_names`` and
        ``metadata`` carrying ``parent_sha256`` (the source file's sha256, or None), and a :class:`TransferResult`.
        The fresh initialisation draws from torch's global RNG, so seed it first for a reproducible run.

    Raises:
        ConfigError: bad ``data_names`` or ``source`` type. WeightsError: unreadable file, or no spec anywhere.
    """
    names = _check_names(data_names)
    src = _read_source(source)
    if source_label:
        src = dataclasses.replace(src, label=str(source_label))
    arch = spec if spec is not None else src.spec
    if arch is None:
        raise WeightsError(
            f"{src.label}: the weights carry no architecture spec; pass spec= (e.g. 'yolo26n.yaml') to say which "
            "model they belong to"
        )
    model = model_builder(arch)(arch, num_classes=len(names))  # the builder of the spec's task
    head_keys = {key for pair in class_head_keys(model) for key in pair} if src.names else set()
    result = _transfer_matching(model, src, exclude=head_keys)
    if src.names:
        _transfer_head_rows(model, src, match_classes(names, src.names), result, head_keys)
    model.names = names
    model.metadata = {"parent_sha256": src.sha256, "provenance": {"pretrained": src.label}}
    _log(result, names, src.names)
    return model.train(), result
