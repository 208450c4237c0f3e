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
_TORCH_DTYPES = {
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
def read_safetensors_handle(
    path: Path, handle: BinaryIO, size: int
) -> tuple[dict[str, torch.Tensor], dict[str, str], str]:
    """``(tensors in header order, raw __metadata__, sha256 of the file)`` from a file open in binary mode."""
    from yolokit.weights._foreign_archive import available_memory
    from yolokit.weights.native import header_error, parse_header_json

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
    from yolokit.weights.native import MAX_HEADER_BYTES, header_error

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
    dtype = getattr(torch, _TORCH_DTYPES[entry["dtype"]], None)
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
