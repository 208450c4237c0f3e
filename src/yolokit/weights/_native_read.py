"""Reading native weights files as hostile input (private helper of ``weights.native``).

- safetensors: the header is read and validated first (length, JSON nesting, offsets tiling the buffer), then the
  declared tensor bytes are checked against the memory this process may use, and only then is each tensor read
  from the open file straight into its own buffer, in offset order, hashing the bytes on the way (the file is read
  once and never whole into memory). Peak memory: the tensors' bytes + the header + a constant.
- native ``.pt``: read by yolokit's restricted unpickler (``_foreign_pickle``) restricted further to the globals a
  yolokit ``.pt`` holds (torch's tensor rebuild functions, storage types, ``collections.OrderedDict``), the same
  guarded path as reference checkpoints: nesting depth, storage sizes and views are checked before use. Peak
  memory: twice the storages' bytes + the pickle + a constant.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from yolokit.errors import WeightsError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from yolokit.weights._foreign_archive import TorchArchive

MAX_JSON_DEPTH = 32  # metadata values nested deeper than this are refused (real metadata nests < 8 levels)
_REDO = "re-download or re-export the file"
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors cap against huge-JSON denial of service
# safetensors dtype -> bytes per element (the dtypes torch can represent)
DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
TORCH_DTYPES = {  # safetensors dtype -> torch dtype name (weights/native.py writes by its inverse)
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
    "I16": "int16", "U16": "uint16", "F16": "float16", "BF16": "bfloat16", "I32": "int32", "U32": "uint32",
    "F32": "float32", "I64": "int64", "U64": "uint64", "F64": "float64",
}  # fmt: skip


def json_depth_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a decoded JSON value nests containers deeper than ``limit`` (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def loads_json(text: str | bytes, what: str, path: Path, **kwargs: Any) -> Any:
    """``json.loads`` whose every failure (syntax, RecursionError, over-deep nesting) is one ``WeightsError``."""
    try:
        value = json.loads(text, **kwargs)
    except RecursionError:
        raise WeightsError(f"{path}: {what} nests JSON too deeply to read (over {MAX_JSON_DEPTH} levels); "
                           f"{_REDO}") from None  # fmt: skip
    except (UnicodeDecodeError, ValueError) as exc:
        raise WeightsError(f"{path}: {what} is not valid JSON ({str(exc)[:200]}); {_REDO}") from None
    if json_depth_exceeds(value):
        raise WeightsError(f"{path}: {what} nests JSON more than {MAX_JSON_DEPTH} levels deep; {_REDO}")
    return value


# --- safetensors ---------------------------------------------------------------------------------------------------
def header_error(path: Path, message: str) -> WeightsError:
    return WeightsError(f"{path}: not a valid safetensors file: {message}; {_REDO}")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        duplicate = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"duplicate key {duplicate!r}")
    return dict(pairs)


def _check_tensor_entry(path: Path, name: str, entry: Any) -> tuple[int, int]:
    """Validate one header entry; returns its ``(begin, end)`` byte offsets."""
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
        raise header_error(path, f"tensor '{name}' needs dtype, shape and data_offsets, found {entry!r}"[:300])
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPE_SIZES:
        raise header_error(path, f"tensor '{name}' has unknown dtype {dtype!r} (known: {', '.join(DTYPE_SIZES)})")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise header_error(path, f"tensor '{name}' has invalid shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise header_error(path, f"tensor '{name}' has invalid data_offsets {offsets!r}")
    expected = math.prod(shape) * DTYPE_SIZES[dtype]
    if offsets[1] - offsets[0] != expected:
        raise header_error(
            path,
            f"tensor '{name}' ({dtype} {shape}) needs {expected} bytes, its offsets {offsets} span "
            f"{offsets[1] - offsets[0]}",
        )
    return offsets[0], offsets[1]


def _check_coverage(path: Path, spans: list[tuple[int, int, str]], buffer_size: int) -> None:
    """Offsets must tile ``[0, buffer_size)`` exactly: no gap, no overlap, nothing past the end."""
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            what = "overlaps the previous tensor" if begin < position else f"leaves a gap at byte {position}"
            raise header_error(path, f"tensor '{name}' at offsets [{begin}, {end}] {what}")
        position = end
    if position > buffer_size:
        raise header_error(path, f"file is truncated: tensors need {position} data bytes, found {buffer_size}")
    if position < buffer_size:
        raise header_error(path, f"{buffer_size - position} trailing bytes are not covered by any tensor")


def parse_header_json(path: Path, header_bytes: bytes, buffer_size: int) -> tuple[dict[str, Any], dict[str, str]]:
    """Validate the header JSON of a safetensors file whose tensor buffer holds ``buffer_size`` bytes."""
    if not header_bytes.startswith(b"{"):
        raise header_error(path, f"header must start with '{{', found {header_bytes[:8]!r}")
    try:
        header = json.loads(header_bytes.decode("utf-8"), object_pairs_hook=_reject_duplicates)
    except RecursionError:
        raise header_error(path, "header JSON is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise header_error(path, f"header is not valid JSON ({str(exc)[:200]})") from None
    if not isinstance(header, dict) or json_depth_exceeds(header, 3):
        raise header_error(path, "header must be a JSON object of {name: {dtype, shape, data_offsets}}")
    raw_meta = header.pop("__metadata__", None) or {}
    if not isinstance(raw_meta, dict) or not all(isinstance(v, str) for v in raw_meta.values()):
        raise header_error(path, "'__metadata__' must map strings to strings")
    spans = [(*_check_tensor_entry(path, name, entry), name) for name, entry in header.items()]
    _check_coverage(path, spans, buffer_size)
    return header, raw_meta


def read_safetensors_handle(
    path: Path, handle: BinaryIO, size: int
) -> tuple[dict[str, torch.Tensor], dict[str, str], str]:
    """``(tensors in header order, raw __metadata__, sha256 of the file)`` from a file open in binary mode."""
    from yolokit.weights._foreign_archive import available_memory

    if sys.byteorder != "little":
        raise WeightsError(f"{path}: reading safetensors needs a little-endian machine; use a native .pt instead")
    hasher = hashlib.sha256()
    handle.seek(0)
    prefix = handle.read(8)
    if len(prefix) < 8:
        raise header_error(path, f"file has {len(prefix)} bytes, fewer than the 8-byte header length")
    (header_len,) = struct.unpack("<Q", prefix)
    header_bytes = _read_header(path, handle, header_len, size)
    hasher.update(prefix + header_bytes)
    entries, raw_meta = parse_header_json(path, header_bytes, size - 8 - header_len)
    needed, budget = size - 8 - header_len, available_memory()
    if needed > budget:
        raise WeightsError(f"{path}: the tensors declare {needed} bytes, more than the {budget} bytes this process "
                           "may allocate; refused before reading (corrupt or malicious file)")  # fmt: skip
    tensors = {}
    for name in sorted(entries, key=lambda n: entries[n]["data_offsets"][0]):
        tensors[name] = _read_tensor(path, handle, name, entries[name], hasher)
    if handle.read(1):
        raise header_error(path, "the file grew while it was read")
    return {name: tensors[name] for name in entries}, raw_meta, hasher.hexdigest()


def _read_header(path: Path, handle: BinaryIO, header_len: int, size: int) -> bytes:
    if header_len > MAX_HEADER_BYTES:
        raise header_error(path, f"header length {header_len} bytes exceeds the 100 MB limit")
    if header_len > size - 8:
        raise header_error(path, f"header length {header_len} exceeds the file size ({size} bytes)")
    header_bytes = handle.read(header_len)
    if len(header_bytes) != header_len:
        raise header_error(path, "the file is shorter than its header")
    return header_bytes


def _read_tensor(path: Path, handle: BinaryIO, name: str, entry: dict[str, Any], hasher: Any) -> torch.Tensor:
    """One tensor read from the handle into a fresh buffer (little-endian file bytes; swapped on big-endian)."""
    import torch

    begin, end = entry["data_offsets"]
    dtype = getattr(torch, TORCH_DTYPES[entry["dtype"]], None)
    if dtype is None:
        raise WeightsError(f"{path}: tensor '{name}' has dtype {entry['dtype']}, which this torch cannot hold")
    try:
        raw = torch.empty(end - begin, dtype=torch.uint8)
    except (RuntimeError, MemoryError) as exc:
        raise WeightsError(f"{path}: cannot allocate {end - begin} bytes for tensor '{name}' ({exc}); "
                           "free memory or use a smaller file") from None  # fmt: skip
    view = memoryview(raw.numpy())
    filled = 0
    while filled < len(view):
        count = handle.readinto(view[filled:])
        if not count:
            raise WeightsError(f"{path}: file is truncated inside tensor '{name}'; {_REDO}")
        filled += count
    hasher.update(view)
    return raw.view(dtype).reshape(entry["shape"])


# --- native .pt ----------------------------------------------------------------------------------------------------
def is_native_global(module: str, name: str) -> bool:
    """The globals a native ``.pt`` may reference: torch's tensor rebuild + storage types, and OrderedDict."""
    if module == "collections":
        return name == "OrderedDict"
    if module == "torch._utils":
        return name in ("_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
                        "_rebuild_parameter_with_state")  # fmt: skip
    return module == "torch" and name.endswith("Storage")


def read_native_archive(archive: TorchArchive) -> Any:
    """Unpickle a native ``.pt`` archive with the restricted unpickler limited to :func:`is_native_global`."""
    from yolokit.weights._foreign_pickle import load_archive_pickle

    return load_archive_pickle(archive, only=is_native_global)
