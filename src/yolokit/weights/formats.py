"""What a weights file is, from its content, with the file opened once.

    fmt = detect_format("best.pt")     # "safetensors" | "yolokit-pt" | "ultralytics-pt" | "onnx"
    with open_weights("best.pt") as source:   # the same detection, keeping the file open for one reader
        ...

Detection (never by file name):

- ``safetensors``: an 8-byte little-endian header length followed by ``{`` (the header is validated on reading);
- ``onnx``: the top-level fields of a protobuf ``ModelProto``, walked to the end of the file (``looks_like_onnx``);
- a torch zip archive (``PK\\x03\\x04``): its zip directory is read once, with the size caps of ``TorchArchive``.
  The member names cannot tell a yolokit ``.pt`` from a reference (Ultralytics) one: ``torch.save`` writes the same
  ``<folder>/data.pkl``, ``data/<key>``, ``byteorder``, ``version`` members for both and the folder name is just
  the saved file's stem (or ``archive``). So the archive's ``data.pkl`` is read and its opcodes walked once,
  without executing anything (``_foreign_pickle.scan_pickle``): ``ultralytics`` globals -> ``ultralytics-pt``;
  a ``models.yolo.Model`` / ``DetectionModel`` of no family ``weights.families`` names -> ``yolov5-pt``
  (``weights.yolov5``; its globals are checked by the reader, like a reference file's);
  only torch's tensor-rebuild globals and ``OrderedDict`` plus yolokit's ``yolokit_format`` key -> ``yolokit-pt``;
  any other global -> ``UnsafeWeightsError``; neither -> ``WeightsError`` (a plain torch pickle). The readers
  reuse that walk and the open archive, so loading a file walks its pickle once (a protocol-4 pickle, which
  torch.save does not write by default, twice).

Anything else is a one-line ``WeightsError`` listing the supported formats.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from yolokit.errors import UnsafeWeightsError, WeightsError

if TYPE_CHECKING:  # pragma: no cover
    from yolokit.weights._foreign_archive import TorchArchive
    from yolokit.weights._foreign_globals import GlobalRef

__all__ = ["FORMATS", "OpenedWeights", "detect_format", "open_weights", "probe_weights"]

FORMATS = ("safetensors", "yolokit-pt", "ultralytics-pt", "yolov5-pt", "onnx")
TORCH_PICKLE = "torch-pickle"  # a torch archive that is none of FORMATS (inspect reports it; loaders refuse it)
SUPPORTED = ("safetensors, yolokit .pt, Ultralytics .pt or YOLOv5 .pt (read-only) or ONNX (detected, loads via "
             "YOLO())")
_ZIP_MAGIC = b"PK\x03\x04"


@dataclasses.dataclass
class OpenedWeights:
    """A weights file opened once: its ``format`` (from content) and the open binary ``handle``.

    For a torch archive also the open ``archive`` (its zip directory read once) and the ``globals`` its pickle
    references (walked once); ``problem`` is why such an archive cannot be loaded (``format == "torch-pickle"`` or
    refused globals), else None. Close it (or use ``with``) when done.
    """

    path: Path
    format: str
    handle: BinaryIO
    size: int
    archive: TorchArchive | None = None
    globals: list[GlobalRef] = dataclasses.field(default_factory=list)
    problem: WeightsError | None = None
    _sha256: str | None = dataclasses.field(default=None, repr=False)

    def sha256(self) -> str:
        """Hex sha256 of the file's bytes (computed once, from the open handle)."""
        if self._sha256 is None:
            self.handle.seek(0)
            digest = hashlib.sha256()
            for chunk in iter(lambda: self.handle.read(1 << 20), b""):
                digest.update(chunk)
            self._sha256 = digest.hexdigest()
        return self._sha256

    def read_bytes(self) -> bytes:
        """The whole file (its sha256 is taken from these bytes, so the file is read once)."""
        self.handle.seek(0)
        data = self.handle.read()
        if self._sha256 is None:
            self._sha256 = hashlib.sha256(data).hexdigest()
        return data

    def close(self) -> None:
        """Close the archive (if any) and the file."""
        if self.archive is not None:
            self.archive.close()
        self.handle.close()

    def __enter__(self) -> OpenedWeights:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def detect_format(path: str | Path) -> str:
    """Format of a weights file from its content: ``"safetensors"``, ``"yolokit-pt"``, ``"ultralytics-pt"``,
    ``"yolov5-pt"`` or ``"onnx"`` (see the module docstring). Raises ``WeightsError`` (listing the supported formats)
    for a missing, empty or unknown file and ``UnsafeWeightsError`` for a torch pickle referencing other globals."""
    with open_weights(path) as source:
        return source.format


def open_weights(path: str | Path) -> OpenedWeights:
    """``probe_weights`` that raises the ``problem`` of a torch archive that cannot be loaded."""
    source = probe_weights(path)
    if source.problem is not None:
        source.close()
        raise source.problem
    return source


def probe_weights(path: str | Path) -> OpenedWeights:
    """Open ``path`` once and detect its format; a torch archive's loading problem is returned, not raised.

    Raises ``WeightsError`` for a missing, empty, unknown or corrupt file.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found; check the path (expected {SUPPORTED})")
    try:
        handle = open(path, "rb")  # noqa: SIM115 - the returned OpenedWeights owns and closes it
    except OSError as err:  # PermissionError, a FIFO that vanished, ...
        raise WeightsError(f"{path}: cannot open the weights file ({err.strerror or err}); check its permissions") \
            from None
    try:
        return _probe(path, handle)
    except OSError as err:  # a read error while probing (EIO, a directory turned file, ...)
        handle.close()
        raise WeightsError(f"{path}: cannot read the weights file ({err.strerror or err})") from None
    except BaseException:
        handle.close()
        raise


def _probe(path: Path, handle: BinaryIO) -> OpenedWeights:
    from yolokit.weights import native

    size = path.stat().st_size
    if size == 0:
        raise unknown_format(path, "the file is empty")
    head = handle.read(16)
    if head.startswith(_ZIP_MAGIC):
        return _probe_archive(path, handle, size)
    if native.looks_like_safetensors(head):
        return OpenedWeights(path, "safetensors", handle, size)
    if native.looks_like_onnx(handle, size):
        return OpenedWeights(path, "onnx", handle, size)
    if head[:1] == b"\x80":
        raise unknown_format(path, "a legacy non-zip torch pickle, which yolokit does not read")
    raise unknown_format(path, f"first bytes {head[:8].hex(' ')}")


def _probe_archive(path: Path, handle: BinaryIO, size: int) -> OpenedWeights:
    """Open the zip directory and walk the pickle's opcodes once; classify (module docstring)."""
    from yolokit.weights._foreign_archive import TorchArchive
    from yolokit.weights._foreign_pickle import scan_pickle
    from yolokit.weights.native import MARKER

    archive = TorchArchive(path, handle=handle)
    try:
        scan = scan_pickle(archive.read_pickle(), path, marker=MARKER)
    except BaseException:
        archive.close()
        raise
    source = OpenedWeights(path, TORCH_PICKLE, handle, size, archive=archive, globals=scan.globals)
    if any(ref.module.split(".")[0] == "ultralytics" for ref in scan.globals):
        source.format = "ultralytics-pt"  # its globals are checked by the reader (YOLOv5, refused names)
        return source
    from yolokit.weights.families import unsupported_message
    from yolokit.weights.yolov5 import is_yolov5_checkpoint

    if is_yolov5_checkpoint(scan.globals) and unsupported_message(scan.globals, path) is None:
        source.format = "yolov5-pt"  # a yolov5-repository detection model; refused globals are named by the reader
        return source
    foreign = [ref.qualname for ref in scan.globals if not _is_native_global(ref)]
    family = unsupported_message(scan.globals, path) if foreign else None
    if family is not None:  # e.g. a YOLOv5-repository checkpoint: said in words (weights.families)
        source.problem = WeightsError(family)
    elif foreign:
        source.problem = UnsafeWeightsError(
            f"{path}: torch pickle references {', '.join(foreign[:5])}, which is neither a yolokit nor an "
            "Ultralytics checkpoint; nothing was executed; only load files from sources you trust"
        )
    elif not scan.has_marker:
        source.problem = unknown_format(
            path, "a plain torch pickle without yolokit metadata; save weights with yolokit.save_weights"
        )
    else:
        source.format = "yolokit-pt"
    return source


def _is_native_global(ref: Any) -> bool:
    """The globals a native ``.pt`` may reference: torch's tensor rebuild + storage types, and OrderedDict."""
    from yolokit.weights._native_read import is_native_global

    return is_native_global(ref.module, ref.name)


def unknown_format(path: Path, found: str) -> WeightsError:
    """The one-line error for a file that is not a supported weights file."""
    return WeightsError(f"{path}: unrecognised weights file ({found}); supported formats: {SUPPORTED}")
