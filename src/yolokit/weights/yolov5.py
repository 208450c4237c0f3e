"""Legacy YOLOv5 checkpoints (the ultralytics/yolov5 repository's ``.pt`` files), read without executing anything.

Such a file pickles the whole model: ``models.yolo.Model`` (``DetectionModel`` from v6.2) holding an
``nn.Sequential`` of ``models.common`` layers and a ``models.yolo.Detect`` head, in a dict ``{epoch, model, ema,
optimizer, date, ...}`` (``ema`` None after the original's optimizer stripping; weights usually fp16). The restricted
unpickler turns every class into an inert record (the allow-list in ``_foreign_globals`` names exactly the detection
classes; anything else is refused, naming it). From the records this module takes

- the model's parsed config dict (``yaml``: ``nc``, ``depth_multiple``, ``width_multiple``, ``anchors``, ``backbone``,
  ``head``), with the **anchors replaced by the checkpoint's own** (``Detect.anchors`` x ``stride``, i.e. after
  AutoAnchor), the Conv / BottleneckCSP activations, whether one activation instance is shared, and the BatchNorm
  eps: the spec ``models.yolov5.build_yolov5`` rebuilds the network from (yolokit's modules, nothing of the
  original's code);
- the tensors, whose names already are those of the rebuilt model (``model.24.anchors``, ``model.24.m.0.weight``);
  a v5.0-era ``anchor_grid`` buffer is dropped (it is ``anchors * stride``);
- ``names`` (a list in older files, a dict in newer), the strides, the date, and a release guess from the layers
  (:func:`guess_release`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolokit.errors import WeightsError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from yolokit.weights._foreign_archive import TorchArchive
    from yolokit.weights._foreign_globals import GlobalRef, ModuleRecord
    from yolokit.weights.formats import OpenedWeights

__all__ = ["guess_release", "is_yolov5_checkpoint", "origin_text", "read_yolov5", "read_yolov5_stored",
           "yolov5_spec"]
logger = logging.getLogger(__name__)

FORMAT = "yolov5-pt"
_MODEL_CLASSES = ("Model", "DetectionModel")
_ACT_NAMES = {"SiLU": "SiLU", "Hardswish": "Hardswish", "ReLU": "ReLU", "Identity": "Identity"}


def is_yolov5_checkpoint(refs: list[GlobalRef]) -> bool:
    """True when the pickle's globals name a YOLOv5 model class (``models.yolo.Model`` / ``DetectionModel``); the
    reader refuses any global outside the allow-list, naming it (``formats`` first asks ``weights.families`` whether
    the file is of a family yolokit cannot read, such as YOLOv7, which pickles the same class names)."""
    return any(ref.module == "models.yolo" and ref.name in _MODEL_CLASSES for ref in refs)


def _select(ckpt: Any, path: Path) -> ModuleRecord:
    """``ckpt['ema']`` if present and not None, else ``ckpt['model']`` (the original loaders' rule)."""
    from yolokit.weights._foreign_globals import ModuleRecord

    model = ckpt
    if isinstance(ckpt, dict):
        model = ckpt.get("ema") if ckpt.get("ema") is not None else ckpt.get("model")
    if not isinstance(model, ModuleRecord) or model.type_name not in _MODEL_CLASSES:
        found = getattr(model, "type_name", type(model).__name__)
        raise WeightsError(f"{path}: expected a YOLOv5 checkpoint whose 'model' (or 'ema') is a models.yolo.Model, "
                           f"found {found}; re-save it with the yolov5 repository's train.py")
    if not isinstance(model.modules.get("model"), ModuleRecord):
        raise WeightsError(f"{path}: the YOLOv5 model holds no layer Sequential 'model'; the file is not a complete "
                           "YOLOv5 checkpoint")
    return model


def _records(root: ModuleRecord) -> list[ModuleRecord]:
    """Every module record of the tree, each once, depth first (shared instances counted once)."""
    from yolokit.weights._foreign_globals import ModuleRecord

    seen: dict[int, ModuleRecord] = {}
    stack = [root]
    while stack:
        record = stack.pop()
        if id(record) in seen or len(seen) > 100_000:
            continue
        seen[id(record)] = record
        stack.extend(reversed([c for c in record.modules.values() if isinstance(c, ModuleRecord)]))
    return list(seen.values())


def _act_name(record: Any, path: Path, where: str) -> str:
    from yolokit.weights._foreign_globals import ModuleRecord

    if not isinstance(record, ModuleRecord):
        raise WeightsError(f"{path}: {where} has no activation module; expected SiLU, Hardswish or LeakyReLU")
    if record.type_name == "LeakyReLU":
        slope = record.attributes.get("negative_slope", 0.01)
        return f"LeakyReLU({float(slope):g})"
    if record.type_name not in _ACT_NAMES:
        raise WeightsError(f"{path}: {where} uses activation {record.type_name}, which yolokit's YOLOv5 layers do "
                           "not have (SiLU, Hardswish, LeakyReLU, ReLU)")
    return _ACT_NAMES[record.type_name]


def _layer_features(records: list[ModuleRecord], path: Path) -> dict[str, Any]:
    """Activations (Conv's, BottleneckCSP's), activation sharing and BatchNorm eps, read from the records."""
    convs = [r for r in records if r.module == "models.common" and r.type_name == "Conv"]
    acts = {_act_name(r.modules.get("act"), path, "a Conv layer") for r in convs}
    if len(acts) != 1:
        raise WeightsError(f"{path}: the Conv layers use different activations ({', '.join(sorted(acts))}); yolokit "
                           "rebuilds YOLOv5 models with one Conv activation")
    csp = {_act_name(r.modules.get("act"), path, "a BottleneckCSP layer") for r in records
           if r.module == "models.common" and r.type_name == "BottleneckCSP"}
    eps = {float(r.attributes.get("eps", 1e-5)) for r in records if r.type_name == "BatchNorm2d"}
    if len(eps) > 1 or len(csp) > 1:
        raise WeightsError(f"{path}: mixed BatchNorm eps {sorted(eps)} or BottleneckCSP activations {sorted(csp)}; "
                           "yolokit rebuilds YOLOv5 models with one of each")
    features: dict[str, Any] = {"activation": acts.pop()}
    shared = len(convs) > 1 and len({id(r.modules.get("act")) for r in convs}) == 1
    features["shared_activation"] = shared
    if csp:
        features["csp_activation"] = csp.pop()
    if eps:
        features["bn_eps"] = eps.pop()
    return features


def _detect(model: ModuleRecord, path: Path) -> ModuleRecord:
    layers = list(model.modules["model"].modules.values())
    head = layers[-1] if layers else None
    if getattr(head, "type_name", None) != "Detect" or "anchors" not in getattr(head, "buffers", {}):
        found = getattr(head, "type_name", "nothing")
        raise WeightsError(f"{path}: the last YOLOv5 layer is {found}, expected a Detect head with an 'anchors' "
                           "buffer (YOLOv5 segmentation/classification models are not supported)")
    return head


def _strides(model: ModuleRecord, head: ModuleRecord, path: Path) -> list[float]:
    import torch

    from yolokit.weights._foreign_pickle import to_plain

    stride = head.attributes.get("stride", model.attributes.get("stride"))
    values = stride.float().tolist() if isinstance(stride, torch.Tensor) else to_plain(stride)
    anchors = head.buffers["anchors"]
    if not isinstance(values, list) or len(values) != anchors.shape[0] or not all(v > 0 for v in values):
        raise WeightsError(f"{path}: the Detect head's stride {values!r} does not give one positive stride per "
                           f"anchor level ({anchors.shape[0]}); the checkpoint is incomplete")
    return [float(v) for v in values]


def yolov5_spec(model: ModuleRecord, path: str | Path) -> dict[str, Any]:
    """The yolokit YOLOv5 spec of a model record: its ``yaml`` dict + the checkpoint's anchors (pixels) +
    activation / eps features + ``yaml_file``; ``nc`` from the model (see the module docstring)."""
    from yolokit.weights._foreign_pickle import to_plain

    path = Path(path)
    spec = to_plain(model.attributes.get("yaml"))
    if not isinstance(spec, dict) or not spec.get("backbone") or not spec.get("head"):
        raise WeightsError(f"{path}: the YOLOv5 model has no parsed config ('yaml' dict with backbone and head); "
                           "yolokit cannot tell its layers")
    head = _detect(model, path)
    strides = _strides(model, head, path)
    anchors = head.buffers["anchors"].float()  # (nl, na, 2) grid units
    spec["anchors"] = [[round(float(v), 6) for v in (anchors[i] * s).flatten().tolist()]
                       for i, s in enumerate(strides)]
    nc = to_plain(model.attributes.get("nc", head.attributes.get("nc")))
    if isinstance(nc, int) and not isinstance(nc, bool):
        spec["nc"] = nc
    records = _records(model)
    if any(r.type_name == "Conv" and r.module == "models.common" and r.modules.get("bn") is None for r in records):
        raise WeightsError(f"{path}: this YOLOv5 checkpoint holds a fused model (Conv layers without BatchNorm), "
                           "which yolokit does not rebuild; save the model before fusing it")
    spec.update(_layer_features(records, path))
    _check_rows(model, spec, path)
    yaml_file = to_plain(model.attributes.get("yaml_file"))
    spec["yaml_file"] = Path(yaml_file).name if isinstance(yaml_file, str) and yaml_file else "yolov5.yaml"
    spec.pop("ch", None)
    return spec


def _check_rows(model: ModuleRecord, spec: dict[str, Any], path: Path) -> None:
    """Every layer row names a layer yolokit rebuilds (else a one-line error naming the row and the release)."""
    from yolokit.models.spec import canonical_module_name
    from yolokit.models.yolov5 import V5_LAYER_TYPES

    for i, row in enumerate(list(spec["backbone"]) + list(spec["head"])):
        name = canonical_module_name(row[2]) if isinstance(row, list) and len(row) == 4 else None
        if name not in V5_LAYER_TYPES or (name == "Detect" and not (isinstance(row[0], list) and row[0])):
            raise WeightsError(f"{path}: YOLOv5 checkpoint (release {guess_release(model, spec)} by its layers) has "
                               f"layer {i} {row!r}, which yolokit does not rebuild; YOLOv5 layers it has: "
                               f"{', '.join(V5_LAYER_TYPES)}")


def guess_release(model: ModuleRecord, spec: dict[str, Any]) -> str:
    """The yolov5 release range whose layers the model has, e.g. ``"v6.0-v6.1"``.

    6x6-conv stem + SPPF: v6.0-v6.1 (class ``Model``) or v6.2-v7.0 (``DetectionModel``); Focus stem + C3: v4.0-v5.0;
    BottleneckCSP with LeakyReLU(0.1) Convs: v1.0-v2.0, with Hardswish Convs: v3.0-v3.1 (the v3.0 release switched
    Conv's activation; BottleneckCSP kept its own LeakyReLU).
    """
    types = {row[2] for row in spec.get("backbone", []) + spec.get("head", []) if len(row) > 2}
    act = spec.get("activation")
    if "BottleneckCSP" in types and "C3" not in types:
        return {"LeakyReLU(0.1)": "v1.0-v2.0", "Hardswish": "v3.0-v3.1"}.get(str(act), "v4.0-v5.0")
    if "Focus" in types:
        return "v4.0-v5.0"
    if "SPPF" in types:
        return "v6.2-v7.0" if model.type_name == "DetectionModel" else "v6.0-v6.1"
    return "unknown"


def _layer_words(spec: dict[str, Any]) -> str:
    types = [row[2] for row in spec.get("backbone", []) + spec.get("head", []) if len(row) > 2]
    first = spec["backbone"][0] if spec.get("backbone") else None
    stem = ("Focus stem" if first and first[2] == "Focus" else
            "6x6-conv stem" if first and first[2] == "Conv" and len(first[3]) > 1 and first[3][1] == 6 else "Conv stem")
    blocks = [t for t in ("C3", "BottleneckCSP", "SPPF", "SPP") if t in types]
    levels = len(spec.get("anchors") or [])
    return ", ".join([stem, *blocks, str(spec.get("activation", "SiLU"))] + (["P6"] if levels == 4 else []))


def origin_text(metadata: dict[str, Any]) -> str | None:
    """``"YOLOv5 checkpoint, release v6.0-v6.1 (6x6-conv stem, C3, SPPF, SiLU; dated 2022-02-08)"`` for metadata
    of an imported (or converted) YOLOv5 checkpoint, else None."""
    provenance = metadata.get("provenance") or {}
    if provenance.get("source") != "yolov5":
        return None
    date = str(provenance.get("date") or "")[:10]
    details = (provenance.get("layers") or "") + (f"; dated {date}" if date else "")
    return f"YOLOv5 checkpoint, release {provenance.get('release', 'unknown')}" + (f" ({details})" if details else "")


def _names(model: ModuleRecord, nc: int) -> dict[int, str]:
    from yolokit.weights._foreign_pickle import to_plain

    names = to_plain(model.attributes.get("names"))
    if isinstance(names, list):
        return {i: str(v) for i, v in enumerate(names)}
    if isinstance(names, dict):
        return {int(k): str(v) for k, v in names.items()}
    from yolokit.models.spec_limits import MAX_CLASSES

    return {i: f"class{i}" for i in range(min(nc, MAX_CLASSES))}  # more: refused by the names/nc check below


def _imgsz(opt: Any) -> int | list[int]:
    value = opt.get("imgsz", opt.get("img_size")) if isinstance(opt, dict) else None
    if isinstance(value, list) and value and all(isinstance(v, int) and v > 0 for v in value):
        return value[0] if len(set(value)) == 1 else value[:2]
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 640


def _metadata(ckpt: Any, model: ModuleRecord, path: Path, sha256: str) -> dict[str, Any]:
    import yolokit
    from yolokit.weights._foreign_pickle import to_plain
    from yolokit.weights.metadata import FORMAT_VERSION, normalize_metadata, utc_now_iso

    ckpt = ckpt if isinstance(ckpt, dict) else {}
    spec = yolov5_spec(model, path)
    names = _names(model, int(spec["nc"]))
    if len(names) != spec["nc"]:
        raise WeightsError(f"{path}: the model has {spec['nc']} classes but {len(names)} names; the file is "
                           "inconsistent")
    opt = to_plain(ckpt.get("opt"))
    provenance = {
        "source": "yolov5", "source_format": FORMAT, "source_sha256": sha256, "source_file": path.name,
        "release": guess_release(model, spec), "layers": _layer_words(spec), "date": to_plain(ckpt.get("date")),
        "epoch": to_plain(ckpt.get("epoch")), "train_args": opt if isinstance(opt, dict) else {},
        "hyp": to_plain(model.attributes.get("hyp")), "model_class": f"models.yolo.{model.type_name}",
    }  # fmt: skip
    raw = {
        "format_version": FORMAT_VERSION, "task": "detect", "spec": spec, "names": names,
        "stride": _strides(model, _detect(model, path), path), "imgsz": _imgsz(opt),
        "yolokit_version": yolokit.__version__, "created": utc_now_iso(), "parent_sha256": sha256,
        "provenance": {k: v for k, v in provenance.items() if v is not None},
    }  # fmt: skip
    return normalize_metadata(raw, source=str(path))


def _state_dict(model: ModuleRecord, path: Path, float32: bool) -> dict[str, torch.Tensor]:
    from yolokit.weights.foreign import flatten_state_dict

    state_dict = flatten_state_dict(model, path, float32=float32)
    return {k: v for k, v in state_dict.items() if not k.endswith(".anchor_grid")}  # = anchors * stride


def _load(archive: TorchArchive, refs: list[GlobalRef]) -> Any:
    from yolokit.weights.foreign import load_checkpoint_from

    return load_checkpoint_from(archive, refs)


def read_yolov5(archive: TorchArchive, refs: list[GlobalRef],
                sha256: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict fp32, metadata)`` of a YOLOv5 checkpoint already open and scanned (``formats.open_weights``).

    Metadata follows the yolokit schema; ``provenance`` carries ``source='yolov5'``, ``source_format``,
    ``source_sha256``, ``release`` (:func:`guess_release`), ``layers`` (in words), ``date``, ``epoch``,
    ``train_args`` (the checkpoint's ``opt``), ``hyp``. Raises ``UnsafeWeightsError`` for a refused global and
    ``WeightsError`` for a file whose records do not describe a YOLOv5 detection model.
    """
    ckpt = _load(archive, refs)
    model = _select(ckpt, archive.path)
    metadata = _metadata(ckpt, model, archive.path, sha256)
    state_dict = _state_dict(model, archive.path, float32=True)
    logger.info("Read %d tensors from YOLOv5 checkpoint %s (%s)", len(state_dict), archive.path,
                origin_text(metadata))
    return state_dict, metadata


def read_yolov5_stored(source: OpenedWeights) -> tuple[dict[str, Any], dict[str, Any]]:
    """For ``inspect``: the tensors in their stored dtype (fp16 stays fp16) and the metadata, without import-time
    values (``created``, ``yolokit_version``, ``parent_sha256`` None)."""
    ckpt = _load(source.archive, source.globals)
    model = _select(ckpt, source.path)
    metadata = _metadata(ckpt, model, source.path, source.sha256())
    metadata.update(created=None, yolokit_version=None, parent_sha256=None)
    return _state_dict(model, source.path, float32=False), metadata
