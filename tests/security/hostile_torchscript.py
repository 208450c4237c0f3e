"""Hostile TorchScript files: scripted modules whose ``__setstate__`` (run by ``torch.jit.load``) and ``forward`` write
a marker file through ``torch.from_file(..., shared=True)`` (which creates and fills the file: real file IO from
TorchScript code), and archives that break the bounds of ``weights._torchscript_archive``. Built in the test process;
only loading them (in a memory-capped child) would run their code."""

from __future__ import annotations

import io
import json
import sys
import warnings
import zipfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "weights"))  # foreign_helpers
from foreign_helpers import Call, Fake, pickle_bytes, read_entries, write_archive  # noqa: E402

from yolokit.export.torchscript import EXTRA_FILE  # noqa: E402

YOLOKIT_JSON = {"format": "torchscript", "task": "detect", "names": {"0": "a"}, "stride": [8, 16, 32],
                "imgsz": [64, 64], "dynamic": True, "nms_free": False, "end2end": False, "max_det": 300}  # fmt: skip


class MarkerOnLoad(torch.nn.Module):
    """Writes ``<marker>.load`` when unpickled by ``torch.jit.load`` and ``<marker>.forward`` on every call."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.buf = torch.zeros(1, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        written = torch.from_file(self.marker + ".forward", shared=True, size=8, dtype=torch.uint8)
        written.fill_(70)
        return x + written.sum()

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.marker = state[0]
        self.training = state[1]
        written = torch.from_file(state[0] + ".load", shared=True, size=8, dtype=torch.uint8)
        written.fill_(76)
        self.buf = written


def hostile_torchscript(path: Path, marker: Path, metadata: dict | None = None) -> Path:
    """A TorchScript file with yolokit's ``yolokit.json`` (``metadata`` merged in) whose load writes ``marker``."""
    extra = json.dumps({**YOLOKIT_JSON, **(metadata or {})})
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script / save are deprecated, still work
        torch.jit.save(torch.jit.script(MarkerOnLoad(str(marker))), buffer, _extra_files={EXTRA_FILE: extra})
    path.write_bytes(buffer.getvalue())
    return path


def replace_member(source: Path, path: Path, suffix: str, data: bytes | None, new_name: str | None = None) -> Path:
    """A copy of the archive ``source`` with the member ending in ``suffix`` replaced by ``data`` (``None``: kept) and
    renamed to ``new_name`` when given."""
    entries = read_entries(source)
    name = next(n for n in entries if n.endswith(suffix))
    value = entries.pop(name) if data is None else (entries.pop(name), data)[1]
    entries[new_name or name] = value
    return write_archive(path, entries)


def constants_calling_system(source: Path, path: Path, command: str) -> Path:
    """``source`` whose constants.pkl (read by torch.jit.load's own unpickler) calls ``os.system(command)``."""
    return replace_member(source, path, "/constants.pkl", pickle_bytes(Call(Fake("posix", "system"), (command,))))


def member_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()
