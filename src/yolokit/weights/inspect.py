"""``inspect_weights``: what a weights file is, whether it is safe to load, and what it holds, for any format.

    report = inspect_weights("yolo26n.pt")     # plain JSON-able dict
    print(format_inspect(report))              # the text ``yolokit inspect FILE`` prints

An unsafe file is still inspectable: the report says ``safety.verdict == "unsafe"`` and lists the refused globals;
such a file is never unpickled. The file is opened once: torch archives are scanned opcode by opcode first (nothing
executed); reference (Ultralytics) checkpoints are then read with the restricted unpickler, native files with the
native readers.
"""

from __future__ import annotations

import collections
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolokit.errors import UnsafeWeightsError, WeightsError
from yolokit.weights.formats import TORCH_PICKLE

if TYPE_CHECKING:  # pragma: no cover
    from yolokit.weights.formats import OpenedWeights

__all__ = ["format_inspect", "inspect_weights"]
logger = logging.getLogger(__name__)

_FAMILY_RE = re.compile(r"(yolo(?:e-)?v?\d+)", re.IGNORECASE)
_SCALE_RE = re.compile(r"yolo(?:e-)?v?\d+([nslmx])", re.IGNORECASE)
_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked", ".anchors")  # anchors: YOLOv5 head


def inspect_weights(path: str | Path) -> dict[str, Any]:
    """Describe any weights file (reference ``.pt``, native ``.pt``, ``.safetensors``, ONNX) as a JSON-able dict.

    Keys: ``path``, ``format``, ``file_size`` (bytes), ``sha256``, ``safety`` (``verdict`` "safe"/"unsafe",
    ``detail``, ``globals``: ``[{"global", "pickled_as", "allowed"}]``), ``task``, ``architecture`` (``name``,
    ``family``, ``scale``, ``layers``), ``nc``, ``names`` (``{"0": "person"}``), ``parameters``, ``tensors``,
    ``dtypes`` (tensor count per dtype), ``stride``, ``imgsz`` (the size predict and val use by default), ``spec``
    (the layer spec, when recorded), ``created`` (date / versions / provenance; an ONNX file's raw metadata) and
    ``error`` (why the contents could not be read, else None). Raises ``WeightsError`` only for a missing file or
    one that is not a weights file at all. The file is opened once (``formats.probe_weights``).
    """
    from yolokit.weights.formats import probe_weights

    with probe_weights(path) as source:
        report: dict[str, Any] = {
            "path": str(source.path), "format": source.format, "file_size": source.size, "sha256": source.sha256(),
            "safety": {"verdict": "safe", "detail": "", "globals": []}, "task": None, "architecture": None,
            "nc": None, "names": None, "parameters": None, "tensors": None, "dtypes": {}, "stride": None,
            "imgsz": None, "spec": None, "created": {}, "error": None,
        }  # fmt: skip
        if source.archive is not None:
            _inspect_torch_archive(source, report)
        else:
            _inspect_other(source, report)
    return report


def _inspect_torch_archive(source: OpenedWeights, report: dict[str, Any]) -> None:
    from yolokit.weights.families import unsupported_message

    refs = source.globals
    report["safety"]["globals"] = [{"global": r.resolved, "pickled_as": r.qualname, "allowed": r.allowed} for r in refs]
    if source.problem is not None:  # a torch pickle that is neither a yolokit nor a reference checkpoint
        report["error"] = str(source.problem)
    refused = [r.resolved for r in refs if not r.allowed]
    family = unsupported_message(refs, source.path) if refused else None
    if family is not None:  # a known kind yolokit cannot read yet (weights.families): said in words
        report["safety"].update(verdict="unsupported", detail=(
            f"{len(refused)} of {len(refs)} pickle globals are classes of code yolokit does not have; the file was "
            "not unpickled (nothing was executed)"))  # fmt: skip
        report["error"] = family.split(": ", 1)[1]
        return
    if refused:
        report["safety"].update(verdict="unsafe", detail=(
            f"{len(refused)} of {len(refs)} pickle globals are outside the allow-list ({', '.join(refused[:5])}); "
            "the file was not unpickled and must not be loaded"))  # fmt: skip
        return
    foreign = report["format"] in ("ultralytics-pt", "yolov5-pt")
    kind = "restricted unpickler" if foreign or report["format"] == "yolokit-pt" else "torch.load(weights_only=True)"
    report["safety"]["detail"] = f"{len(refs)} pickle globals, all on the allow-list ({kind}); no code is executed"
    if report["format"] == TORCH_PICKLE:  # allow-listed globals only: describe a plain state_dict if it is one
        _describe_plain_pickle(source, report)
        return
    try:
        if report["format"] == "ultralytics-pt":
            state_dict, metadata = _read_reference_stored_dtypes(source)
        elif report["format"] == "yolov5-pt":
            from yolokit.weights.yolov5 import read_yolov5_stored

            state_dict, metadata = read_yolov5_stored(source)
        else:
            state_dict, metadata = _read_native(source)
    except UnsafeWeightsError:
        raise
    except WeightsError as exc:
        report["error"] = str(exc)
        return
    _describe(report, state_dict, metadata)


def _describe_plain_pickle(source: OpenedWeights, report: dict[str, Any]) -> None:
    """Tensor counts of a plain ``torch.save(state_dict)`` (or ``{"state_dict": ...}``) file."""
    import torch

    from yolokit.weights.foreign import load_checkpoint_from

    try:
        obj = load_checkpoint_from(source.archive, source.globals)
    except WeightsError as exc:
        report["error"] = str(exc)
        return
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        _describe(report, {str(k): v for k, v in obj.items()}, {})
        report["error"] = "a plain torch state_dict without architecture or class names (not a yolokit file)"


def _inspect_other(source: OpenedWeights, report: dict[str, Any]) -> None:
    if report["format"] == "onnx":
        report["safety"]["detail"] = "ONNX graph: no pickle code"
        _inspect_onnx(source, report)
        return
    report["safety"]["detail"] = "safetensors: raw tensors and a JSON header, no pickle code"
    try:
        state_dict, metadata = _read_native(source)
    except WeightsError as exc:
        report["error"] = str(exc)
        return
    _describe(report, state_dict, metadata)


def _read_reference_stored_dtypes(source: OpenedWeights) -> tuple[dict[str, Any], dict[str, Any]]:
    """A reference checkpoint's tensors in their stored dtype (fp16 stays fp16) and its yolokit metadata."""
    from yolokit.weights.foreign import build_import_metadata, flatten_state_dict, load_checkpoint_from, select_model

    path = source.path
    ckpt = load_checkpoint_from(source.archive, source.globals)
    model = select_model(ckpt, path)
    state_dict = flatten_state_dict(model, path, float32=False)
    metadata = build_import_metadata(ckpt if isinstance(ckpt, dict) else {}, model, path, source.sha256())
    metadata.update(created=None, yolokit_version=None, parent_sha256=None)  # import-time values, not the file's
    return state_dict, metadata


def _read_native(source: OpenedWeights) -> tuple[dict[str, Any], dict[str, Any]]:
    from yolokit.weights.read import read_source

    weights = read_source(source)
    return weights.state_dict, weights.metadata


def _describe(report: dict[str, Any], state_dict: dict[str, Any], metadata: dict[str, Any]) -> None:
    """Fill the content fields from tensors (stored dtypes) and metadata (yolokit schema, may be empty)."""
    report["tensors"] = len(state_dict)
    report["parameters"] = sum(t.numel() for k, t in state_dict.items() if not k.endswith(_BUFFER_SUFFIXES))
    counts = collections.Counter(str(t.dtype).replace("torch.", "") for t in state_dict.values())
    report["dtypes"] = dict(sorted(counts.items()))
    if not metadata:
        report["error"] = "no yolokit metadata (architecture, class names): tensors only"
        return
    names = metadata.get("names") or {}
    report.update(task=metadata.get("task"), nc=len(names), names={str(k): v for k, v in names.items()},
                  stride=metadata.get("stride"), imgsz=metadata.get("imgsz"))  # fmt: skip
    report["architecture"] = architecture(metadata.get("spec") or {})
    report["spec"] = metadata.get("spec")
    provenance = metadata.get("provenance") or {}
    created = {
        "created": metadata.get("created"), "yolokit_version": metadata.get("yolokit_version"),
        "source": provenance.get("source"), "reference_version": provenance.get("reference_version"),
        "date": provenance.get("date"), "epoch": provenance.get("epoch"),
        "source_format": provenance.get("source_format"), "parent_sha256": metadata.get("parent_sha256"),
    }  # fmt: skip
    report["created"] = {k: v for k, v in created.items() if v is not None}
    from yolokit.weights.yolov5 import origin_text

    origin = origin_text(metadata)
    if origin:  # a (converted) YOLOv5 checkpoint: which release its layers say
        report["origin"] = origin


def architecture(spec: dict[str, Any]) -> dict[str, Any]:
    """``{"name": "YOLO26n", "family": "yolo26", "scale": "n", "layers": 24}`` from a spec dict.

    The family comes from the spec's ``yaml_file`` (``yolo26n.yaml``), else from its layers (an end-to-end head ->
    yolo26, C3k2 -> yolo11, C2f -> yolov8); the scale from ``scale``, the file name, or the only scale defined.
    """
    yaml_file = Path(str(spec.get("yaml_file") or "")).stem
    match = _FAMILY_RE.search(yaml_file)
    rows = [row for part in ("backbone", "head") for row in (spec.get(part) or []) if isinstance(row, list)]
    types = {row[2] for row in rows if len(row) > 2 and isinstance(row[2], str)}
    if match:
        family = match.group(1).lower()
    elif spec.get("end2end"):
        family = "yolo26"
    else:
        family = "yolo11" if "C3k2" in types else "yolov8" if "C2f" in types else "unknown"
    scale = spec.get("scale") or None
    scale_match = _SCALE_RE.search(yaml_file)
    if not scale and scale_match:
        scale = scale_match.group(1).lower()
    scales = spec.get("scales")
    if not scale and isinstance(scales, dict) and len(scales) == 1:
        scale = next(iter(scales))
    name = family.replace("yolo", "YOLO") + (scale or "") if family != "unknown" else "unknown"
    return {"name": name, "family": family, "scale": scale, "layers": len(rows)}


def _inspect_onnx(source: OpenedWeights, report: dict[str, Any]) -> None:
    """Initializer count/dtypes/parameters and metadata_props of an ONNX model (needs the ``onnx`` package)."""
    try:
        import onnx
        from onnx import helper
    except ImportError:
        report["error"] = "install onnx (pip install onnx) to inspect the graph's contents"
        return
    try:
        source.handle.seek(0)
        model = onnx.load(source.handle, load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises many types for a damaged protobuf
        report["error"] = f"cannot parse the ONNX graph ({type(exc).__name__}: {exc})"
        return
    inits = list(model.graph.initializer)
    report["tensors"] = len(inits)
    report["parameters"] = sum(int(_prod(t.dims)) for t in inits)
    counts = collections.Counter(str(helper.tensor_dtype_to_np_dtype(t.data_type)) for t in inits)
    report["dtypes"] = dict(sorted(counts.items()))
    props = {p.key: p.value for p in model.metadata_props}
    report["created"] = {"producer": f"{model.producer_name} {model.producer_version}".strip(),
                         "opset": max((o.version for o in model.opset_import), default=None), **props}  # fmt: skip
    from yolokit.weights.inspect_rows import onnx_fields

    report.update(onnx_fields(props))
    if report.get("spec"):
        report["architecture"] = architecture(report["spec"])


def _prod(dims: Any) -> int:
    out = 1
    for d in dims:
        out *= int(d)
    return out


def format_inspect(report: dict[str, Any], show_globals: bool = False) -> str:
    """Human-readable multi-line text of an ``inspect_weights`` report (refused globals are always listed; sizes in
    MB = 10**6 bytes)."""
    from yolokit.utils.io import format_size

    safety = report["safety"]
    lines = [
        f"File        {report['path']} ({format_size(report['file_size'])})",
        f"SHA-256     {report['sha256']}",
        f"Format      {report['format']}",
        f"Safety      {safety['verdict'].upper()}: {safety['detail']}",
    ]
    for ref in safety["globals"]:
        if show_globals or not ref["allowed"]:
            written = f"  (pickled as {ref['pickled_as']})" if ref["pickled_as"] != ref["global"] else ""
            label = "allowed" if ref["allowed"] else "not read" if safety["verdict"] == "unsupported" else "REFUSED"
            lines.append(f"  {label}  {ref['global']}{written}")
    arch = report.get("architecture")
    if arch:
        lines.append(f"Model       {arch['name']} (family {arch['family']}, scale {arch['scale'] or '?'}, "
                     f"{arch['layers']} layers), task {report['task']}")  # fmt: skip
    if report.get("names") is not None:
        shown = ", ".join(f"{k} {v}" for k, v in list(report["names"].items())[:10])
        more = f", ... (+{report['nc'] - 10})" if report["nc"] > 10 else ""
        lines.append(f"Classes     {report['nc']}: {shown}{more}")
    if report.get("parameters") is not None:
        dtypes = ", ".join(f"{k}: {v}" for k, v in report["dtypes"].items())
        lines.append(f"Parameters  {report['parameters']:,} ({report['tensors']} tensors; {dtypes})")
    if report.get("stride") or report.get("imgsz"):
        lines.append(f"Input       imgsz {report.get('imgsz')} (predict/val default), stride {report.get('stride')}")
    if report.get("origin"):
        lines.append(f"Origin      {report['origin']}")
    from yolokit.weights.inspect_rows import created_rows, spec_rows

    lines += created_rows(report) + spec_rows(report.get("spec"))
    if report.get("error"):
        lines.append(f"Note        {report['error']}")
    return "\n".join(lines)
