"""Torch zip archives opened as hostile input (private helper of ``weights.foreign``).

Layout: ``<folder>/data.pkl`` (the pickle), ``<folder>/data/<key>`` (raw bytes of each storage), ``<folder>/byteorder``
(``little``/``big``). Sizes declared in the zip directory are checked before any entry is read: every member must lie
inside the file (a stored member's bytes are all there; a compressed one may declare at most ``MAX_RATIO`` times its
compressed bytes), data.pkl <= 256 MiB, one storage <= 4 GiB, all storages <= the memory this process may allocate
(``available_memory``), so a zip bomb or a member declaring gigabytes the file does not hold is refused up front.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from yolokit.errors import WeightsError

MAX_PICKLE_BYTES = 256 * 2**20  # data.pkl larger than this is refused before reading
MAX_STORAGE_BYTES = 4 * 2**30  # one storage entry
MAX_RATIO = 4  # a compressed member may declare at most 4x its compressed bytes + 1 MiB (torch.save stores, never
#               compresses: so what a member expands to stays within the stated bound of 4x the file + a constant)
_REDO = "re-download the file or re-save it with the reference tool"

def available_memory() -> int:
    """Bytes one read may allocate: physical memory, or less when the process runs under an address-space limit
    (``RLIMIT_AS``: the limit minus what the process already maps); 64 GiB when unknown."""
    try:
        budget = int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        budget = 64 * 2**30
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit != resource.RLIM_INFINITY:
            with open("/proc/self/statm") as statm:
                mapped = int(statm.read().split()[0]) * int(os.sysconf("SC_PAGE_SIZE"))
            budget = min(budget, max(0, limit - mapped))
    except (ImportError, OSError, ValueError, IndexError):
        pass
    return budget


def _line(exc: BaseException) -> str:
    """An exception's text on one line, at most 200 characters."""
    return " ".join(str(exc).split())[:200] or type(exc).__name__


class _Malformed(Exception):
    """Internal: the pickle is structurally wrong (turned into a WeightsError naming the file)."""


# --- the archive ---------------------------------------------------------------------------------------------------
class _Storage:
    """The raw bytes of one ``<folder>/data/<key>`` entry, viewed as tensors of a dtype on demand."""

    def __init__(self, path: Path, key: str, data: bytearray, dtype: torch.dtype, big_endian: bool,
                 budget: list[int] | None = None) -> None:  # fmt: skip
        self.path, self.key, self.data, self.dtype, self.big_endian = path, key, data, dtype, big_endian
        self._views: dict[torch.dtype, torch.Tensor] = {}
        self._budget = budget if budget is not None else [2 * len(data) + 2**20]

    def charge(self, nbytes: int) -> None:
        """Count a tensor view of ``nbytes`` against the archive's view budget (twice its storage bytes + 16 MiB):
        views are copied later, so many views of one storage must not add up to more than the file holds."""
        self._budget[0] -= nbytes
        if self._budget[0] < 0:
            raise WeightsError(f"{self.path}: the tensors view more bytes than twice the archive's storages hold; "
                               "refused (corrupt or malicious file)")  # fmt: skip

    def typed(self, dtype: torch.dtype) -> torch.Tensor:
        """The whole storage as a flat tensor of ``dtype`` (little-endian bytes swapped from a big-endian file)."""
        if dtype not in self._views:
            itemsize = dtype.itemsize
            if len(self.data) % itemsize:
                raise _Malformed(f"storage '{self.key}' of {len(self.data)} bytes cannot hold {dtype} elements")
            data = self.data
            part = itemsize // 2 if dtype.is_complex else itemsize
            if self.big_endian and part > 1:
                data = bytearray(np.frombuffer(data, dtype=f">u{part}").astype(f"<u{part}").tobytes())
            self._views[dtype] = torch.frombuffer(data, dtype=dtype) if data else torch.empty(0, dtype=dtype)
        return self._views[dtype]


class TorchArchive:
    """A torch zip archive opened for reading, with every size checked against caps before anything is read.

    ``handle``: the file already open in binary mode (the caller keeps and closes it); the zip directory is then
    parsed from it, so the file is opened once. Without it the archive opens ``path`` itself.
    """

    def __init__(self, path: str | Path, handle: BinaryIO | None = None) -> None:
        self.path = Path(path)
        self._check_magic(handle)
        try:
            self._zip = zipfile.ZipFile(self.path if handle is None else handle)
            infos = self._zip.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, OverflowError) as exc:
            raise WeightsError(f"{self.path}: not a readable torch zip archive ({_line(exc)}); the file is "
                               f"truncated or corrupt, {_REDO}") from exc  # fmt: skip
        pickles = [i for i in infos if i.filename.endswith("/data.pkl") and i.filename.count("/") == 1]
        if len(pickles) != 1:
            found = "no" if not pickles else f"{len(pickles)}"
            self.close()
            raise WeightsError(f"{self.path}: expected one '<folder>/data.pkl' in the torch archive, found {found}; "
                               f"the archive is incomplete or not a torch checkpoint, {_REDO}")  # fmt: skip
        self.folder = pickles[0].filename[: -len("/data.pkl")]
        self._entries = {i.filename: i for i in infos}
        self._pickle_info, self._pickle = pickles[0], b""
        self._check_sizes(infos)
        self.big_endian = self._byteorder()

    def _check_magic(self, handle: BinaryIO | None) -> None:
        if handle is not None:
            handle.seek(0)
            head = handle.read(4)
        elif not self.path.is_file():
            raise WeightsError(f"{self.path}: weights file not found (expected a .pt file); check the path")
        else:
            with open(self.path, "rb") as opened:
                head = opened.read(4)
        if head != b"PK\x03\x04":
            kind = "a legacy (pre-1.6) torch file" if head[:1] == b"\x80" else f"a file starting with {head!r}"
            raise WeightsError(f"{self.path}: expected a torch zip archive (starting with b'PK\\x03\\x04'), "
                               f"found {kind}; re-save it with torch>=1.6 or pass a .pt/.safetensors file")  # fmt: skip

    def _check_sizes(self, infos: list[zipfile.ZipInfo]) -> None:
        """Every member must fit in the archive as declared (stored: its bytes are in the file; compressed: at most
        ``MAX_RATIO`` times its compressed bytes), data.pkl and each storage under their caps, and all storages
        within the memory this process may allocate: so no read can grow past what the file really holds."""
        archive_size = self._archive_size()
        if self._pickle_info.file_size > MAX_PICKLE_BYTES:
            self._refuse(f"declares a {self._pickle_info.file_size}-byte data.pkl (cap {MAX_PICKLE_BYTES})")
        data_prefix, total = f"{self.folder}/data/", 0
        for info in infos:
            self._check_member(info, archive_size)
            if info.filename.startswith(data_prefix):
                if info.file_size > MAX_STORAGE_BYTES:
                    self._refuse(f"declares a {info.file_size}-byte storage '{info.filename}' "
                                 f"(cap {MAX_STORAGE_BYTES})")
                total += info.file_size
        self.storage_bytes = total
        self._view_budget = [2 * total + 16 * 2**20]
        if total > available_memory():
            self._refuse(f"declares {total} bytes of storages, more than the {available_memory()} bytes this "
                         "process may allocate")  # fmt: skip

    def _archive_size(self) -> int:
        handle = self._zip.fp
        try:
            return os.fstat(handle.fileno()).st_size
        except (AttributeError, OSError, ValueError):
            position = handle.tell()
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(position)
            return size

    def _check_member(self, info: zipfile.ZipInfo, archive_size: int) -> None:
        if info.header_offset + info.compress_size > archive_size:
            self._refuse(f"member '{info.filename}' declares {info.compress_size} bytes at offset "
                         f"{info.header_offset}, past the end of the {archive_size}-byte file")  # fmt: skip
        stored = info.compress_type == zipfile.ZIP_STORED
        if (stored and info.file_size != info.compress_size) or info.file_size > MAX_RATIO * info.compress_size + 2**20:
            self._refuse(f"member '{info.filename}' declares {info.file_size} bytes from {info.compress_size} "
                         "bytes in the file")  # fmt: skip

    def _refuse(self, message: str) -> None:
        self.close()
        raise WeightsError(f"{self.path}: {message}; refused before reading (corrupt or malicious archive)")

    def _read(self, info: zipfile.ZipInfo) -> bytes:
        try:
            return self._zip.read(info)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError, RuntimeError, ValueError,
                OverflowError) as exc:  # fmt: skip  (ValueError covers a local header name that is not UTF-8)
            raise WeightsError(f"{self.path}: cannot read '{info.filename}' ({_line(exc)}); the archive is "
                               f"truncated or corrupt, {_REDO}") from exc  # fmt: skip

    def _byteorder(self) -> bool:
        info = self._entries.get(f"{self.folder}/byteorder")
        if info is None:
            return False
        order = self._read(info).decode("ascii", "replace").strip() if info.file_size <= 16 else "?"
        if order not in ("little", "big"):
            self._refuse(f"has an unknown byteorder record {order!r} (expected 'little' or 'big')")
        return order == "big"

    def read_pickle(self) -> bytes:
        """The bytes of ``<folder>/data.pkl`` (read once)."""
        if not self._pickle:
            self._pickle = self._read(self._pickle_info)
        return self._pickle

    def storage(self, key: str, dtype: torch.dtype, numel: int) -> _Storage:
        """Storage ``key`` holding ``numel`` elements of ``dtype``; refuses missing or short entries."""
        name = f"{self.folder}/data/{key}"
        info = self._entries.get(name)
        if "/" in key or info is None:
            raise WeightsError(f"{self.path}: the pickle references storage '{key}' but the archive has no '{name}'; "
                               f"the file is incomplete, {_REDO}")  # fmt: skip
        nbytes = numel * dtype.itemsize
        if info.file_size < nbytes:
            raise WeightsError(f"{self.path}: storage '{key}' holds {info.file_size} bytes but {numel} {dtype} "
                               f"elements need {nbytes}; the file is truncated, {_REDO}")  # fmt: skip
        data = bytearray(memoryview(self._read(info))[:nbytes])
        return _Storage(self.path, key, data, dtype, self.big_endian, self._view_budget)

    def close(self) -> None:
        """Close the zip directory (a handle passed in stays open)."""
        if getattr(self, "_zip", None) is not None:
            self._zip.close()

    def __enter__(self) -> TorchArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
