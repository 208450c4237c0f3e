"""Reference (Ultralytics) ``.pt`` checkpoints, read without executing anything.

A reference checkpoint is a torch zip archive ``<folder>/data.pkl`` + ``<folder>/data/<key>`` (raw storage bytes)
+ ``<folder>/byteorder``. Its pickle holds whole ``nn.Module`` objects. yolokit never calls
``torch.load(weights_only=False)`` and never imports ``ultralytics``: the pickle is first scanned opcode by opcode
(:func:`scan_globals`), then run by a restricted unpickler (``_foreign_pickle``, built on the pure-Python
``pickle._Unpickler`` with our own object-creating opcodes) whose ``find_class`` only knows an explicit allow-list
and turns every module class into an inert :class:`ModuleRecord`. Tensors are rebuilt from the archive's storage
bytes with bounds checks. A global outside the allow-list raises :class:`~yolokit.errors.UnsafeWeightsError`
naming ``module.name`` before anything runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolokit.errors import UnsafeWeightsError, WeightsError
from yolokit.models.spec_limits import MAX_CLASSES
from yolokit.weights._foreign_pickle import (
    GlobalRef,
    ModuleRecord,
    NamespaceRecord,
    TorchArchive,
    available_memory,
    is_allowed,
    load_archive_pickle,
    scan_pickle_globals,
    to_plain,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "GlobalRef", "ModuleRecord", "NamespaceRecord", "is_allowed", "load_checkpoint", "load_checkpoint_from",
    "read_reference", "read_ultralytics", "scan_globals",
]  # fmt: skip
logger = logging.getLogger(__name__)
MAX_RECORD_VISITS = 100_000  # module-record visits while flattening (a YOLO model has a few hundred records)

_TASK_MODELS = {
    "DetectionModel": "detect", "YOLOv10DetectionModel": "detect", "SegmentationModel": "segment",
    "PoseModel": "pose", "OBBModel": "obb", "ClassificationModel": "classify", "RTDETRDetectionModel": "rtdetr",
    "WorldModel": "world", "YOLOEModel": "yoloe", "YOLOESegModel": "yoloe-segment",
}  # fmt: skip


def scan_globals(path: str | Path) -> list[GlobalRef]:
    """Every global (``module``, ``name``) the archive's pickle references, in order of first use, deduplicated.

    Found by walking the opcodes with ``pickletools.genops`` (nothing is executed). ``allowed`` says whether the
    restricted unpickler accepts it. Raises ``WeightsError`` when the file is not a readable torch archive.
    """
    with TorchArchive(path) as archive:
        return scan_pickle_globals(archive.read_pickle(), archive.path)


def refuse_globals(refs: list[GlobalRef], path: str | Path) -> None:
    """Raise for a recognised family yolokit cannot read yet (``WeightsError`` naming it, from the table in
    ``weights.families``: YOLOv5, a reference segmentation checkpoint...) or any refused global
    (``UnsafeWeightsError``)."""
    from yolokit.weights.families import unsupported_message

    message = unsupported_message(refs, path)
    if message is not None:
        raise WeightsError(message)
    refused = [ref for ref in refs if not ref.allowed]
    if refused:
        others = ", ".join(r.resolved for r in refused[1:4])
        more = f" (and {len(refused) - 1} more: {others})" if len(refused) > 1 else ""
        raise UnsafeWeightsError(
            f"{path}: refused global {refused[0].describe()}{more}: it is outside yolokit's allow-list of "
            "checkpoint globals; nothing was executed. Only load files from sources you trust"
        )


def load_checkpoint(path: str | Path) -> Any:
    """Scan, then unpickle the archive into plain containers, tensors and inert records (nothing executed)."""
    with TorchArchive(path) as archive:
        return load_checkpoint_from(archive, scan_pickle_globals(archive.read_pickle(), archive.path))


def load_checkpoint_from(archive: TorchArchive, refs: list[GlobalRef]) -> Any:
    """Unpickle an archive already open whose pickle was scanned into ``refs`` (refused globals raise first)."""
    refuse_globals(refs, archive.path)
    return load_archive_pickle(archive)


def read_ultralytics(path: str | Path, sha256: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a reference checkpoint: ``(state_dict, metadata)``.

    ``state_dict`` uses the reference names (``model.0.conv.weight``...), floating tensors as fp32, integer buffers
    (``num_batches_tracked``, int64) unchanged. ``metadata`` follows the yolokit schema (``spec``, ``names``
    ``{int: str}``, ``stride``, ``imgsz``, ``task`` from the model's class, ``provenance`` with
    ``source='ultralytics'``, ``source_sha256``, ``reference_version``, ``date``, ``train_args``, ``train_metrics``,
    ``epoch``). ``sha256``: the file's digest when the caller already has it (else it is computed).
    Raises ``UnsafeWeightsError`` for a refused global and ``WeightsError`` for anything else unreadable.
    """
    from yolokit.utils.io import sha256_file

    path = Path(path)
    with TorchArchive(path) as archive:
        refs = scan_pickle_globals(archive.read_pickle(), archive.path)
        return read_reference(archive, refs, sha256 or sha256_file(path))


def read_reference(
    archive: TorchArchive, refs: list[GlobalRef], sha256: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``read_ultralytics`` on an archive already open, its pickle already scanned into ``refs``."""
    from yolokit.weights.metadata import TASKS

    path = archive.path
    ckpt = load_checkpoint_from(archive, refs)
    model = select_model(ckpt, path)
    task = model_task(model)
    if task not in TASKS:
        from yolokit.weights.families import reference_task_message

        raise WeightsError(reference_task_message(path, model.type_name, task))
    state_dict = flatten_state_dict(model, path)
    metadata = build_import_metadata(ckpt if isinstance(ckpt, dict) else {}, model, path, sha256)
    logger.info("Read %d tensors from reference checkpoint %s", len(state_dict), path)
    return state_dict, metadata


def select_model(ckpt: Any, path: str | Path) -> ModuleRecord:
    """``ckpt['ema']`` if present and not None, else ``ckpt['model']``; a bare model object is used as is."""
    if isinstance(ckpt, ModuleRecord):
        model = ckpt
    elif isinstance(ckpt, dict):
        model = ckpt.get("ema") if ckpt.get("ema") is not None else ckpt.get("model")
        if model is None:
            raise WeightsError(
                f"{path}: the checkpoint dict has no 'model' or 'ema' entry (keys: {sorted(map(str, ckpt))[:12]}); "
                "expected a reference training checkpoint such as best.pt or yolo11n.pt"
            )
    else:
        raise WeightsError(
            f"{path}: expected a checkpoint dict or a model object, found {type(ckpt).__name__}; "
            "this is not a reference (Ultralytics) checkpoint"
        )
    if isinstance(model, dict) and all(isinstance(k, str) for k in model):
        raise WeightsError(
            f"{path}: 'model' holds a plain state_dict without architecture; expected a pickled reference model "
            "(re-save it with its model, or transfer it into a built model with transfer_weights(model, path))"
        )
    if not isinstance(model, ModuleRecord) or not isinstance(model.modules.get("model"), ModuleRecord):
        raise WeightsError(
            f"{path}: 'model' is a {getattr(model, 'type_name', type(model).__name__)}, expected a reference "
            "DetectionModel holding an nn.Sequential 'model'"
        )
    return model


def model_task(model: ModuleRecord) -> str:
    """Task of a model record from its class name (``DetectionModel`` -> ``detect``); ``unknown`` otherwise."""
    return _TASK_MODELS.get(model.type_name, "unknown")


def flatten_state_dict(model: ModuleRecord, path: str | Path, float32: bool = True) -> dict[str, torch.Tensor]:
    """Parameters and persistent buffers of the record tree, named like ``nn.Module.state_dict``.

    ``float32``: floating tensors become fp32 (integer buffers such as ``num_batches_tracked`` keep their dtype);
    otherwise every tensor keeps its stored dtype. Returned tensors are contiguous copies.
    """
    import torch

    raw: dict[str, Any] = {}
    _collect(model, "", raw, [], path, [MAX_RECORD_VISITS])
    for name, tensor in raw.items():
        if not isinstance(tensor, torch.Tensor):
            raise WeightsError(f"{path}: state entry '{name}' is a {type(tensor).__name__}, expected a tensor")
    # the copies may take at most twice the bytes of the storages behind them (fp16 -> fp32) + 16 MiB
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in raw.values()}
    budget, out, copies = min(available_memory(), 2 * sum(storages.values()) + 2**24), {}, {}
    for name, tensor in raw.items():
        if id(tensor) in copies:  # a shared module's tensor under a second name: the same copy, no new memory
            out[name] = copies[id(tensor)][1]
            continue
        dtype = torch.float32 if float32 and tensor.is_floating_point() else tensor.dtype
        budget -= tensor.numel() * dtype.itemsize
        if budget < 0:
            raise WeightsError(f"{path}: tensors need more memory than twice their storages or than this process "
                               f"may allocate (at '{name}'); refused (corrupt or malicious file)")  # fmt: skip
        out[name] = tensor.to(dtype).contiguous() if dtype != tensor.dtype else tensor.contiguous().clone()
        copies[id(tensor)] = (tensor, out[name])
    if not out:
        raise WeightsError(f"{path}: the model holds no parameters or buffers; expected a trained reference model")
    return out


def _collect(record: ModuleRecord, prefix: str, out: dict[str, Any], ancestors: list[int], path: str | Path,
             visits: list[int]) -> None:  # fmt: skip
    """Walk the record tree like ``nn.Module.state_dict`` (a shared submodule under each of its names), refusing
    cycles, depth > 64 and more than ``MAX_RECORD_VISITS`` visits (records sharing children form a DAG whose paths
    multiply: 40 levels of two references to one child are 2^40 paths)."""
    visits[0] -= 1
    if visits[0] < 0:
        raise WeightsError(f"{path}: the module records reach each other along more than {MAX_RECORD_VISITS} paths "
                           "(shared submodules nested as a graph); refused (corrupt or malicious file)")  # fmt: skip
    if id(record) in ancestors or len(ancestors) > 64:
        raise WeightsError(f"{path}: module tree at '{prefix or 'model'}' is cyclic or deeper than 64 levels")
    for name, value in record.parameters.items():
        if value is not None:
            out[prefix + str(name)] = value
    for name, value in record.buffers.items():
        if value is not None and name not in record.non_persistent:
            out[prefix + str(name)] = value
    for name, child in record.modules.items():
        if child is None:
            continue
        if not isinstance(child, ModuleRecord):
            raise WeightsError(f"{path}: submodule '{prefix}{name}' is a {type(child).__name__}, expected a module")
        _collect(child, f"{prefix}{name}.", out, [*ancestors, id(record)], path, visits)


def _names(model: ModuleRecord, nc: Any) -> dict[int, str] | None:
    names = to_plain(model.attributes.get("names"))
    if isinstance(names, list):
        return {i: str(v) for i, v in enumerate(names)}
    if isinstance(names, dict):
        return {int(k): str(v) for k, v in names.items()}
    if not isinstance(nc, int) or isinstance(nc, bool):
        return None
    if not 0 < nc <= MAX_CLASSES:  # checked before range(nc): a declared count alone must not allocate
        raise WeightsError(f"the checkpoint declares nc={nc} without names; expected 1..{MAX_CLASSES} classes")
    return {i: f"class{i}" for i in range(nc)}


def _imgsz(train_args: Any) -> int | list[int]:
    imgsz = train_args.get("imgsz") if isinstance(train_args, dict) else None
    if isinstance(imgsz, bool) or imgsz is None:
        return 640
    if isinstance(imgsz, int) and imgsz > 0:
        return imgsz
    if isinstance(imgsz, list) and len(imgsz) in (1, 2) and all(isinstance(v, int) and v > 0 for v in imgsz):
        return imgsz[0] if len(imgsz) == 1 else imgsz
    return 640


def build_import_metadata(ckpt: dict, model: ModuleRecord, path: str | Path, sha256: str) -> dict[str, Any]:
    """Metadata in the yolokit schema for a reference checkpoint (see the module docstring of ``metadata``)."""
    import yolokit
    from yolokit.weights.metadata import FORMAT_VERSION, normalize_metadata, utc_now_iso

    spec = to_plain(model.attributes.get("yaml"))
    if not isinstance(spec, dict):
        raise WeightsError(f"{path}: the model has no embedded architecture ('yaml' dict); cannot rebuild it")
    nc = to_plain(model.attributes.get("nc"))
    names = _names(model, nc)
    if isinstance(nc, int) and not isinstance(nc, bool):
        spec["nc"] = nc
    elif names:
        spec["nc"] = len(names)
    train_args = to_plain(ckpt.get("train_args"))
    if not isinstance(train_args, dict):
        args = to_plain(model.attributes.get("args"))
        train_args = args if isinstance(args, dict) else {}
    provenance = {
        "source": "ultralytics", "source_sha256": sha256, "source_file": Path(path).name,
        "reference_version": to_plain(ckpt.get("version")), "date": to_plain(ckpt.get("date")),
        "train_args": train_args, "epoch": to_plain(ckpt.get("epoch")),
    }  # fmt: skip
    for key in ("train_metrics", "best_fitness"):
        if ckpt.get(key) is not None:
            provenance[key] = to_plain(ckpt[key])
    transforms = _classify_import(model, spec)
    raw = {
        "format_version": FORMAT_VERSION, "task": model_task(model), "spec": spec, "names": names,
        "stride": to_plain(model.attributes.get("stride")), "imgsz": _imgsz(train_args),
        "yolokit_version": yolokit.__version__, "created": utc_now_iso(), "parent_sha256": sha256,
        "provenance": provenance,
    }  # fmt: skip
    if transforms:
        raw["classify_transforms"] = transforms
        if not isinstance(train_args.get("imgsz"), int) and isinstance(transforms.get("crop"), int):
            raw["imgsz"] = transforms["crop"]
    return normalize_metadata(raw, source=str(path))


def _classify_import(model: ModuleRecord, spec: dict[str, Any]) -> dict[str, Any] | None:
    """A classifier's recorded eval transform (``model.transforms``) and, when not PyTorch's default, its BatchNorm
    eps (into ``spec['bn_eps']``): read from the inert records, nothing run."""
    if model_task(model) != "classify":
        return None
    from yolokit.weights._foreign_transforms import batchnorm_eps, transform_metadata

    eps = batchnorm_eps(model)
    if eps is not None and abs(eps - 1e-5) > 1e-12:
        spec["bn_eps"] = eps
    return transform_metadata(model.attributes.get("transforms"))
