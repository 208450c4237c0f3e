"""TorchScript archives checked as hostile input before ``torch.jit.load`` may see them (private helper of
``export.torchscript``).

A TorchScript file is a torch zip archive: ``<root>/code/**`` (TorchScript source, compiled and run by
``torch.jit.load``: a module's ``__setstate__`` runs on load, ``forward`` on every call), ``<root>/data.pkl`` (the
module objects, ``__torch__.*`` classes), ``<root>/constants.pkl`` (the tensors of a frozen module, with their bytes
in ``<root>/constants/<key>``), ``<root>/extra/*`` (yolokit's ``yolokit.json``), ``version``, ``byteorder``,
``.data/*``. :func:`verify_torchscript` checks, without running anything:

- member names: one root folder, no absolute paths, ``..``, backslashes or NULs, only the members above;
- member sizes, as for every torch archive (``_foreign_archive``): inside the file, a stored member holds what it
  declares, a compressed one at most 4x its compressed bytes + 1 MiB; pickles <= 256 MiB, one storage <= 4 GiB,
  code files <= 64 MiB, extra files <= 16 MiB, everything declared <= the memory this process may allocate;
- ``constants.pkl`` is read by yolokit's restricted unpickler limited to the native tensor globals (storages bounds
  checked against the archive), never by torch's; ``data.pkl``'s globals (an opcode walk, nothing executed) must be
  ``__torch__.*`` classes (defined by the archive's own code) or those tensor globals.

This bounds what loading can allocate and refuses archives that are not what torch.jit.save writes; it does **not**
make the code safe: a TorchScript file is loaded only when trusted (``export.torchscript``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import BinaryIO

from yolokit.errors import UnsafeWeightsError, WeightsError
from yolokit.weights._foreign_archive import (
    MAX_PICKLE_BYTES,
    MAX_STORAGE_BYTES,
    TorchArchive,
    _Storage,
    available_memory,
)

__all__ = ["verify_torchscript"]

MAX_CODE_BYTES = 64 * 2**20  # one code/ member (a detector's code is ~20 KB, its debug_pkl ~50 KB)
MAX_EXTRA_BYTES = 16 * 2**20  # one extra/ member (yolokit.json is a few KB)
MAX_MEMBERS = 100_000
_RE_EXPORT = "re-export the model with yolokit's format=torchscript"
_MEMBER = re.compile(r"^(?:data\.pkl|constants\.pkl|version|\.data/version|byteorder|\.data/serialization_id|"
                     r"\.format_version|\.storage_alignment|code/[\w./-]+|data/\d+|constants/\d+|extra/[\w.-]+)$")


class _TorchScriptArchive(TorchArchive):
    """A TorchScript archive: the torch archive checks plus member names, code/extra caps and constant storages."""

    def __init__(self, path: str | Path, handle: BinaryIO) -> None:
        super().__init__(path, handle=handle)
        self._check_names()
        self._check_torchscript_sizes()

    def _check_names(self) -> None:
        infos = self._zip.infolist()
        if len(infos) > MAX_MEMBERS:
            self._refuse(f"holds {len(infos)} members (cap {MAX_MEMBERS})")
        prefix = f"{self.folder}/"
        for info in infos:
            name = info.filename
            relative = name[len(prefix):] if name.startswith(prefix) else None
            parts = name.split("/")
            if (relative is None or "\\" in name or "\x00" in name or ".." in parts or "" in parts
                    or not _MEMBER.match(relative)):  # fmt: skip
                self._refuse(f"holds the member {name[:120]!r}, which a TorchScript archive written by torch.jit.save "
                             f"does not have (expected only {prefix}code/, data.pkl, constants.pkl, constants/, data/, "
                             "extra/ and torch's version records)")  # fmt: skip
        for required in ("constants.pkl", "data.pkl"):
            if f"{prefix}{required}" not in self._entries:
                self._refuse(f"has no {prefix}{required}; not a TorchScript archive, {_RE_EXPORT}")
        if not any(name.startswith(f"{prefix}code/") for name in self._entries):
            self._refuse(f"has no {prefix}code/ folder; not a TorchScript archive, {_RE_EXPORT}")

    def _check_torchscript_sizes(self) -> None:
        prefix, constants = f"{self.folder}/", 0
        for name, info in self._entries.items():
            kind = name[len(prefix):].split("/", 1)[0]
            cap = {"code": MAX_CODE_BYTES, "extra": MAX_EXTRA_BYTES, "constants": MAX_STORAGE_BYTES,
                   "constants.pkl": MAX_PICKLE_BYTES}.get(kind)  # fmt: skip
            if cap is not None and info.file_size > cap:
                self._refuse(f"declares a {info.file_size}-byte member '{name}' (cap {cap})")
            constants += info.file_size if kind == "constants" else 0
        total = constants + self.storage_bytes
        self._view_budget[0] += 2 * constants
        if total > available_memory():
            self._refuse(f"declares {total} bytes of tensors, more than the {available_memory()} bytes this process "
                         "may allocate")  # fmt: skip

    def read_pickle(self) -> bytes:
        """The bytes of ``<root>/constants.pkl`` (what the restricted unpickler reads here)."""
        if not self._pickle:
            self._pickle = self._read(self._entries[f"{self.folder}/constants.pkl"])
        return self._pickle

    def read_data_pickle(self) -> bytes:
        return self._read(self._entries[f"{self.folder}/data.pkl"])

    def storage(self, key: str, dtype: object, numel: int) -> _Storage:
        """Constant storage ``key`` (``<root>/constants/<key>``), with the checks of ``TorchArchive.storage``."""
        name = f"{self.folder}/constants/{key}"
        info = self._entries.get(name)
        if "/" in key or info is None:
            raise WeightsError(f"{self.path}: constants.pkl references storage '{key}' but the archive has no "
                               f"'{name}'; the file is incomplete, {_RE_EXPORT}")  # fmt: skip
        nbytes = numel * dtype.itemsize  # type: ignore[attr-defined]
        if info.file_size < nbytes:
            raise WeightsError(f"{self.path}: constant storage '{key}' holds {info.file_size} bytes but {numel} "
                               f"elements need {nbytes}; the file is truncated, {_RE_EXPORT}")  # fmt: skip
        data = bytearray(memoryview(self._read(info))[:nbytes])
        return _Storage(self.path, key, data, dtype, self.big_endian, self._view_budget)  # type: ignore[arg-type]


def verify_torchscript(path: str | Path, handle: BinaryIO) -> None:
    """Check the TorchScript archive open in ``handle`` (see the module docstring); ``path`` names it in errors.

    Raises:
        WeightsError: a malformed archive or one over the bounds (one line naming the file).
        UnsafeWeightsError: a pickle global outside the allowed set; nothing was executed.
    """
    from yolokit.weights._foreign_pickle import load_archive_pickle, scan_pickle
    from yolokit.weights._native_read import is_native_global

    with _TorchScriptArchive(path, handle) as archive:
        for ref in scan_pickle(archive.read_data_pickle(), archive.path).globals:
            if not (ref.module == "__torch__" or ref.module.startswith("__torch__.")
                    or is_native_global(ref.module, ref.name)):  # fmt: skip
                raise UnsafeWeightsError(f"{archive.path}: refused global {ref.describe()} in data.pkl: a TorchScript "
                                         "module pickles only its __torch__ classes and tensors; nothing was "
                                         "executed")  # fmt: skip
        load_archive_pickle(archive, only=is_native_global)  # constants.pkl: tensors and plain values only
