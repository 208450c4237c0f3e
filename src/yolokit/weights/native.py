"""Native weights files: ``.safetensors`` with JSON metadata, and a ``weights_only``-loadable ``.pt``.

safetensors layout (validated here before the safetensors library sees the bytes): 8 bytes little-endian u64 ``N``,
``N`` bytes of UTF-8 JSON ``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}``,
then the raw little-endian tensor buffer, which the offsets must cover exactly without overlap. yolokit stores each
metadata key JSON-encoded as a string (``"names": "{\\"0\\": \\"person\\"}"``) plus the marker ``yolokit_format``.

Native ``.pt``: ``torch.save({"yolokit_format": 1, "yolokit": {"format_version": 1}, "metadata": {...},
"state_dict": {name: Tensor}})`` holding only tensors and plain types: the pickle references only torch's
tensor-rebuild globals and ``collections.OrderedDict``, so ``torch.load(weights_only=True)`` can read it; yolokit
itself reads it with its restricted unpickler limited to those globals (``_native_read``), the guarded path.

dtypes: ``half=True`` stores floating tensors as fp16, otherwise fp32; integer buffers (``num_batches_tracked``,
int64) are kept as they are. Readers return tensors in the **stored** dtype so round trips are bit-exact; loading
into a model (``weights.load_model``, ``weights.transfer_weights``) copies them into the model's fp32 parameters.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from yolokit.errors import WeightsError
from yolokit.utils.io import atomic_open
from yolokit.weights._native_read import (  # noqa: F401 - header checks live there, re-exported here
    DTYPE_SIZES,
    MAX_HEADER_BYTES,
    TORCH_DTYPES,
    header_error,
    parse_header_json,
)
from yolokit.weights.metadata import FORMAT_VERSION, metadata_for_file

if TYPE_CHECKING:  # pragma: no cover
    import torch

MARKER = "yolokit_format"
_REDO = "re-download or re-export the file"


def prepare_state_dict(state_dict: dict[str, torch.Tensor], half: bool = False) -> dict[str, torch.Tensor]:
    """Detached contiguous CPU copies; floating tensors as fp16 (``half``) or fp32, other dtypes unchanged."""
    import torch

    out: dict[str, torch.Tensor] = {}
    for name, tensor in state_dict.items():
        if not isinstance(tensor, torch.Tensor):
            raise WeightsError(f"state_dict entry '{name}' must be a tensor, found {type(tensor).__name__}")
        tensor = tensor.detach().to("cpu")
        if tensor.is_floating_point():
            tensor = tensor.to(torch.float16 if half else torch.float32)
        out[str(name)] = tensor.contiguous().clone()
    return out


# --- safetensors ---------------------------------------------------------------------------------------------------
def decode_safetensors_metadata(path: Path, raw_meta: dict[str, str]) -> dict[str, Any] | None:
    """JSON-decode yolokit's ``__metadata__`` values; ``None`` when the file carries no yolokit marker."""
    if MARKER not in raw_meta:
        return None
    from yolokit.weights._native_read import loads_json

    decoded = {key: loads_json(value, f"metadata key '{key}'", path) for key, value in raw_meta.items()}
    decoded.pop(MARKER)
    return decoded


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Read a safetensors file -> ``(state_dict in stored dtypes, decoded metadata or None)``.

    The metadata is ``None`` for a safetensors file not written by yolokit (no ``yolokit_format`` marker).
    """
    path = Path(path)
    with open(path, "rb") as handle:
        state_dict, raw_meta, _ = load_safetensors_handle(path, handle)
    return state_dict, raw_meta


def parse_safetensors(path: Path, data: bytes) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """``read_safetensors`` on the file's bytes already read (``path`` names the file in errors)."""
    import io

    state_dict, raw_meta, _ = load_safetensors_handle(path, io.BytesIO(data), len(data))
    return state_dict, raw_meta


def load_safetensors_handle(
    path: Path, handle: BinaryIO, size: int | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None, str]:
    """``(state_dict in header order, decoded metadata or None, sha256)`` read from an open file, tensor by tensor
    (never the whole file at once; the declared bytes are checked against the memory available first)."""
    import os

    from yolokit.weights._native_read import read_safetensors_handle

    size = os.fstat(handle.fileno()).st_size if size is None else size
    state_dict, raw_meta, digest = read_safetensors_handle(path, handle, size)
    return state_dict, decode_safetensors_metadata(path, raw_meta), digest


_TORCH_TO_SAFETENSORS = {torch_name: code for code, torch_name in TORCH_DTYPES.items()}  # the inverse


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    """Raw little-endian row-major bytes of a contiguous CPU tensor."""
    import torch

    return tensor.reshape(-1).view(torch.uint8).numpy().tobytes()


def encode_safetensors(state_dict: dict, metadata: dict[str, Any], half: bool = False) -> tuple[bytes, list]:
    """Header bytes (length prefix + padded JSON) and the tensors in buffer order.

    Deterministic: ``__metadata__`` keys are sorted, the header lists tensors in state_dict order, and the buffer
    holds them by element size (largest first, so every tensor is aligned to its dtype) then state_dict order.
    """
    if sys.byteorder != "little":
        raise WeightsError("writing safetensors needs a little-endian machine; save a native .pt instead")
    tensors = prepare_state_dict(state_dict, half)
    file_meta = {key: json.dumps(value) for key, value in metadata_for_file(metadata).items()}
    file_meta[MARKER] = json.dumps(FORMAT_VERSION)
    dtypes = {name: _TORCH_TO_SAFETENSORS[str(t.dtype).removeprefix("torch.")] for name, t in tensors.items()}
    order = sorted(tensors, key=lambda name: -DTYPE_SIZES[dtypes[name]])  # stable: keeps state_dict order
    offsets, position = {}, 0
    for name in order:
        size = tensors[name].numel() * DTYPE_SIZES[dtypes[name]]
        offsets[name], position = [position, position + size], position + size
    header: dict[str, Any] = {"__metadata__": dict(sorted(file_meta.items()))}
    for name, tensor in tensors.items():
        header[name] = {"dtype": dtypes[name], "shape": list(tensor.shape), "data_offsets": offsets[name]}
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the buffer starts 8-byte aligned
    return struct.pack("<Q", len(raw)) + raw, [tensors[name] for name in order]


def write_safetensors(path: str | Path, state_dict: dict, metadata: dict[str, Any], half: bool = False) -> Path:
    """Write ``state_dict`` (floating tensors fp32, or fp16 with ``half``) and metadata atomically."""
    path = Path(path)
    header, ordered = encode_safetensors(state_dict, metadata, half)
    with atomic_open(path, "wb") as handle:
        handle.write(header)
        for tensor in ordered:
            handle.write(_tensor_bytes(tensor))
    return path


# --- native .pt ----------------------------------------------------------------------------------------------------
def write_native_pt(path: str | Path, state_dict: dict, metadata: dict[str, Any], half: bool = False) -> Path:
    """Write ``{"yolokit_format", "yolokit", "metadata", "state_dict"}`` with ``torch.save``, atomically."""
    import torch

    path = Path(path)
    payload = {
        MARKER: FORMAT_VERSION,
        "yolokit": {"format_version": FORMAT_VERSION},
        "metadata": metadata_for_file(metadata),
        "state_dict": prepare_state_dict(state_dict, half),
    }
    with atomic_open(path, "wb") as handle:
        torch.save(payload, handle)
    return path


def read_native_pt(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a native ``.pt`` (restricted unpickler, never torch.load) -> ``(state_dict in stored dtypes, metadata)``."""
    path = Path(path)
    with open(path, "rb") as handle:  # a file object: torch.load would treat a path ending in .safetensors as such
        return load_native_pt(path, handle)


def load_native_pt(path: Path, handle: BinaryIO) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``read_native_pt`` from the file already open in binary mode (read from its start; ``path`` for errors).

    Read by yolokit's restricted unpickler limited to the globals a native ``.pt`` holds (not ``torch.load``)."""
    from yolokit.weights._foreign_archive import TorchArchive

    with TorchArchive(path, handle=handle) as archive:
        return load_native_archive(archive)


def read_plain_pt(path: str | Path) -> Any:
    """A ``torch.save`` file of tensors and plain types only (e.g. a training state), read as hostile input.

    The same guarded path as a native ``.pt`` (zip member and storage bounds, nesting depth, copy budget), limited to
    the native globals (torch's tensor rebuilds and storage types, ``collections.OrderedDict``): nothing is executed.
    Tensors come back as views of the storages read (shared like ``torch.load``'s). Raises ``WeightsError`` (one
    line naming the file; ``UnsafeWeightsError`` for another global)."""
    from yolokit.weights._foreign_archive import TorchArchive
    from yolokit.weights._native_read import read_native_archive

    path = Path(path)
    try:
        with open(path, "rb") as handle, TorchArchive(path, handle=handle) as archive:
            return read_native_archive(archive)
    except OSError as err:  # PermissionError / EIO / a folder
        raise WeightsError(f"{path}: cannot read the file ({err.strerror or err})") from None


def load_native_archive(archive: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``read_native_pt`` on a torch archive already open (``formats.open_weights``)."""
    import torch

    from yolokit.weights._foreign_pickle import to_plain
    from yolokit.weights._native_read import read_native_archive

    path, payload = archive.path, read_native_archive(archive)
    if not isinstance(payload, dict) or MARKER not in payload:
        raise WeightsError(f"{path}: expected a yolokit .pt (a dict with '{MARKER}'), found another torch pickle")
    state_dict, metadata = payload.get("state_dict"), payload.get("metadata")
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise WeightsError(f"{path}: 'state_dict' must map names to tensors; {_REDO}")
    if not isinstance(metadata, dict):
        raise WeightsError(f"{path}: 'metadata' must be a dict, found {type(metadata).__name__}; {_REDO}")
    tensors = {str(k): v if v.is_contiguous() else v.contiguous() for k, v in state_dict.items()}
    return tensors, to_plain(metadata)


# --- fitting tensors to a model ------------------------------------------------------------------------------------
def _shape(shape: Any) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def check_fit(source: str | Path, expected: dict[str, Any], found: dict[str, Any], strict: bool = True) -> None:
    """Raise ``WeightsError`` when ``found`` tensors do not fit ``expected`` (a model's state_dict).

    Different shapes always fail; missing keys fail; unexpected keys fail when ``strict``. The message names the
    file, up to 5 keys with expected vs found shapes, and the missing / unexpected counts.
    """
    mismatched = [k for k in expected if k in found and tuple(found[k].shape) != tuple(expected[k].shape)]
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected] if strict else []
    if not (mismatched or missing or unexpected):
        return
    parts = [f"{len(mismatched)} with a different shape"]
    if mismatched:
        shown = "; ".join(
            f"{k} expected {_shape(expected[k].shape)} found {_shape(found[k].shape)}" for k in mismatched[:5]
        )
        parts[0] += f" ({shown}{'; ...' if len(mismatched) > 5 else ''})"
    parts.append(f"{len(missing)} missing" + (f" (first: {', '.join(missing[:3])})" if missing else ""))
    parts.append(f"{len(unexpected)} unexpected" + (f" (first: {', '.join(unexpected[:3])})" if unexpected else ""))
    raise WeightsError(
        f"{source}: tensors do not fit the model: {', '.join(parts)}; use weights saved for this architecture and "
        "class count, or transfer_weights(model, path) to copy only the matching tensors"
    )


# --- content sniffing (used by weights.formats.detect_format) ------------------------------------------------------
ZIP_MAGIC = b"PK\x03\x04"
_ONNX_WIRE_TYPES = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}


def looks_like_safetensors(head: bytes) -> bool:
    """safetensors shape: an 8-byte length followed by ``{`` (the header JSON). Validation happens on reading."""
    return len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] >= 2


def _read_varint(handle: Any) -> int | None:
    value, shift = 0, 0
    while shift < 64:
        byte = handle.read(1)
        if not byte:
            return None
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
        shift += 7
    return None


def looks_like_onnx(handle: BinaryIO, size: int) -> bool:
    """True when the file parses as a top-level ONNX ``ModelProto``.

    The cheap check walks the top-level protobuf fields without decoding them: the first field must be 1
    (``ir_version``, varint, tag byte ``0x08``); every field must carry the ModelProto wire type for its number
    (unknown numbers must be varint or length-delimited); lengths must stay inside the file and end exactly at its
    end; and field 7 (``graph``) must be present. Random bytes and other formats fail within a few bytes.
    """
    seen: set[int] = set()
    handle.seek(0)
    if handle.read(1) != b"\x08":
        return False
    handle.seek(0)
    while handle.tell() < size:
        tag = _read_varint(handle)
        if tag is None:
            return False
        number, wire = tag >> 3, tag & 7
        if number == 0 or wire != _ONNX_WIRE_TYPES.get(number, wire) or wire not in (0, 2):
            return False
        value = _read_varint(handle)
        if value is None:
            return False
        if wire == 2:
            if handle.tell() + value > size:
                return False
            handle.seek(value, 1)
        seen.add(number)
    return 1 in seen and 7 in seen
