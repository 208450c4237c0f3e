"""The metadata schema that travels with every native weights file, and its validation.

A metadata dict (plain JSON types) has these keys:

- ``format_version`` (int): the weights-file schema version, currently ``1``. A file with a newer version is refused
  with a message to upgrade yolokit.
- ``task`` (str): the model's task, one of ``TASKS`` (``"detect"``, ``"classify"``); it comes from the model when
  saving.
- ``spec`` (dict): the architecture (layer rows and scales) as returned by ``models.spec.load_spec``.
- ``names`` (dict): class index -> class name. ``dict[int, str]`` in Python, ``{"0": "person"}`` in files.
- ``stride`` (list[int]): the head strides, e.g. ``[8, 16, 32]``.
- ``imgsz`` (int or [h, w]): the training / default inference image size.
- ``yolokit_version`` (str | None), ``created`` (ISO 8601 UTC str | None).
- ``parent_sha256`` (str | None): sha256 of the file these weights were derived from.
- ``provenance`` (dict): free-form lineage (``source``, ``source_sha256``, ``reference_version``, ``date``,
  ``train_args``, ``metrics``, ``source_format``...).

Unknown extra keys are kept as they are, so files written by a newer minor release still load.
"""

from __future__ import annotations

import copy
import datetime
import json
import re
from typing import Any

from yolokit.errors import WeightsError

FORMAT_VERSION = 1
TASKS = ("detect", "classify")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def utc_now_iso() -> str:
    """Current time as ISO 8601 UTC with seconds precision, e.g. ``2025-01-31T12:00:00Z``."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return now.isoformat().replace("+00:00", "Z")


def _jsonable(value: Any, what: str) -> Any:
    """Deep copy of ``value`` through JSON (tuples become lists); refuses values JSON cannot hold."""
    try:
        return json.loads(json.dumps(value, allow_nan=True))
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"metadata '{what}' must hold plain JSON types (dict, list, str, number), {exc}") from exc


def _stride_list(stride: Any) -> list[int | float] | None:
    """``tensor([8., 16., 32.])`` / list -> ``[8, 16, 32]`` (ints where the value is integral)."""
    if stride is None:
        return None
    values = stride.tolist() if hasattr(stride, "tolist") else list(stride)
    if not isinstance(values, list):
        values = [values]
    return [int(v) if float(v).is_integer() else float(v) for v in values]


def build_metadata(
    model: Any, *, parent_sha256: str | None = None, provenance: dict | None = None, imgsz: int | list[int] = 640
) -> dict[str, Any]:
    """Metadata (schema above, ``names`` with int keys) describing ``model`` as it is now.

    ``model`` needs ``spec`` (dict) and ``names`` (dict[int, str]) attributes and may have ``stride`` (tensor) and
    ``task`` (str; a model without one is a detection model).
    """
    import yolokit

    spec = getattr(model, "spec", None)
    if not isinstance(spec, dict):
        raise WeightsError(
            f"cannot describe a {type(model).__name__} for saving: expected a 'spec' dict attribute (the architecture "
            f"from models.spec.load_spec), found {type(spec).__name__}; build the model with models.build_model"
        )
    names = getattr(model, "names", None)
    if names is None:
        nc = int(getattr(model, "nc", spec.get("nc", 0)) or 0)
        names = {i: f"class{i}" for i in range(nc)}
    raw = {
        "format_version": FORMAT_VERSION,
        "task": getattr(model, "task", "detect"),
        "spec": _jsonable(spec, "spec"),
        "names": {int(k): str(v) for k, v in dict(names).items()},
        "stride": _stride_list(getattr(model, "stride", None)),
        "imgsz": imgsz,
        "yolokit_version": yolokit.__version__,
        "created": utc_now_iso(),
        "parent_sha256": parent_sha256,
        "provenance": _jsonable(dict(provenance or {}), "provenance"),
    }
    return normalize_metadata(raw)


def _max_classes() -> int:
    from yolokit.models.spec_limits import MAX_CLASSES

    return MAX_CLASSES


def _fail(source: str | None, message: str) -> WeightsError:
    where = f"{source}: " if source else ""
    return WeightsError(f"{where}invalid weights metadata: {message}")


def _normalize_names(names: Any, spec: dict, source: str | None) -> dict[int, str]:
    """``{"0": "a"}`` / ``{0: "a"}`` / ``["a"]`` -> ``{0: "a"}``; missing -> ``class0..`` from ``spec['nc']``."""
    if names is None:
        nc = spec.get("nc", 0) or 0
        if not isinstance(nc, int) or not 0 <= nc <= _max_classes():  # checked before range(nc) allocates
            raise _fail(source, f"'spec.nc' is {nc!r} and there are no 'names'; expected 0..{_max_classes()}")
        return {i: f"class{i}" for i in range(nc)}
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    if not isinstance(names, dict):
        raise _fail(source, f"'names' must be a dict of class index -> name, found {type(names).__name__}")
    result: dict[int, str] = {}
    for key, value in names.items():
        try:
            index = int(key)
        except (TypeError, ValueError):
            raise _fail(source, f"'names' keys must be class indices (0, 1, ...), found {key!r}") from None
        result[index] = str(value)
    if sorted(result) != list(range(len(result))):
        raise _fail(source, f"'names' must number classes 0..{len(result) - 1} without gaps, found {sorted(result)}")
    return dict(sorted(result.items()))


def _check_format_version(raw: dict, source: str | None) -> int:
    version = raw.get("format_version", FORMAT_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _fail(source, f"'format_version' must be a positive int, found {version!r}")
    if version > FORMAT_VERSION:
        where = f"{source}: " if source else ""
        raise WeightsError(
            f"{where}needs weights format {version}, this yolokit reads format <= {FORMAT_VERSION}; "
            "upgrade yolokit (pip install -U yolokit)"
        )
    return version


def _check_optional(raw: dict, source: str | None) -> dict[str, Any]:
    """Validate the optional scalar fields; returns them with defaults filled in."""
    imgsz = raw.get("imgsz", 640)
    if isinstance(imgsz, list) and len(imgsz) == 1:
        imgsz = imgsz[0]
    ok_imgsz = (isinstance(imgsz, int) and imgsz > 0) or (
        isinstance(imgsz, list) and len(imgsz) == 2 and all(isinstance(v, int) and v > 0 for v in imgsz)
    )
    if isinstance(imgsz, bool) or not ok_imgsz:
        raise _fail(source, f"'imgsz' must be a positive int or [h, w], found {imgsz!r}")
    parent = raw.get("parent_sha256")
    if parent is not None and (not isinstance(parent, str) or not _SHA256.match(parent)):
        raise _fail(source, f"'parent_sha256' must be 64 lowercase hex digits or null, found {parent!r}")
    provenance = raw.get("provenance") or {}
    if not isinstance(provenance, dict):
        raise _fail(source, f"'provenance' must be a dict, found {type(provenance).__name__}")
    fields: dict[str, Any] = {"imgsz": imgsz, "parent_sha256": parent, "provenance": provenance}
    for key in ("yolokit_version", "created"):
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            raise _fail(source, f"'{key}' must be a string or null, found {value!r}")
        fields[key] = value
    return fields


def normalize_metadata(raw: Any, *, source: str | None = None) -> dict[str, Any]:
    """Validate metadata read from a file (or built in memory) and return it in the Python form.

    ``names`` keys become ints, missing optional fields get defaults (``task='detect'``, ``imgsz=640``,
    ``stride=None``, ``parent_sha256=None``, ``provenance={}``), unknown extra keys are kept. ``source`` (a file
    name) prefixes error messages. Raises ``WeightsError`` for a missing/invalid ``spec``, bad ``names``, a newer
    ``format_version`` or an unsupported ``task``.
    """
    if not isinstance(raw, dict):
        raise _fail(source, f"expected a dict, found {type(raw).__name__}")
    raw = copy.deepcopy(raw)
    version = _check_format_version(raw, source)
    task = raw.get("task", "detect")
    if task not in TASKS:
        raise _fail(source, f"task {task!r} is not supported (supported: {', '.join(TASKS)})")
    spec = raw.get("spec")
    if not isinstance(spec, dict):
        raise _fail(
            source, f"'spec' (the architecture dict) is required, found {type(spec).__name__}; re-save the weights"
        )
    names = _normalize_names(raw.get("names"), spec, source)
    stride = raw.get("stride")
    if stride is not None:
        if not isinstance(stride, list) or not all(isinstance(s, (int, float)) and s > 0 for s in stride):
            raise _fail(source, f"'stride' must be a list of positive numbers, found {stride!r}")
        stride = _stride_list(stride)
    meta = dict(raw)
    meta.update(format_version=version, task=task, spec=spec, names=names, stride=stride)
    meta.update(_check_optional(raw, source))
    return meta


def metadata_for_file(meta: dict[str, Any]) -> dict[str, Any]:
    """The JSON form written to files: ``names`` keys as strings, everything deep-copied through JSON."""
    out = dict(meta)
    out["names"] = {str(k): v for k, v in meta.get("names", {}).items()}
    return _jsonable(out, "metadata")
