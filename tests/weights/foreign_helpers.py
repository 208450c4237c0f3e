"""Builders for hand-made torch archives used by the foreign-weights tests (no ultralytics needed).

``Fake("ultralytics.nn.tasks", "DetectionModel")`` pickles as that global without the module existing; ``Obj(fake,
state)`` pickles as ``fake()`` + BUILD ``state`` (how a module record arrives); ``Call(fn, args)`` pickles as
``fn(*args)`` for any real or fake callable (the malicious payloads). ``fake_torch_save`` writes them with torch's own
archive layout, so tensors inside become real storages.
"""

from __future__ import annotations

import io
import pickle
import struct
import types
import zipfile
from pathlib import Path
from typing import Any

import torch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


class Fake:
    """A global reference ``module.name`` that does not need to exist (callable so pickle accepts it)."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> None:  # pragma: no cover - never called, only pickled
        raise AssertionError("fake global called")


class Obj:
    """Pickles as ``REDUCE fake()`` then ``BUILD state``."""

    def __init__(self, cls: Fake, state: dict | None = None) -> None:
        self.cls, self.state = cls, state

    def __reduce__(self) -> tuple:
        return (self.cls, (), self.state)


class Call:
    """Pickles as ``REDUCE fn(*args)`` (then ``BUILD state`` when a state is given)."""

    def __init__(self, fn: Any, args: tuple = (), state: Any = None) -> None:
        self.fn, self.args, self.state = fn, args, state

    def __call__(self, *args: Any) -> None:  # pragma: no cover - never called, only pickled
        raise AssertionError("payload called")

    def __reduce__(self) -> tuple:
        return (self.fn, self.args) if self.state is None else (self.fn, self.args, self.state)


class StorageRef:
    """Pickles as the persistent id ``('storage', torch.<type>, key, 'cpu', numel)`` torch archives use."""

    def __init__(self, key: str, storage_type: str = "FloatStorage", numel: int = 4) -> None:
        self.pid = ("storage", Fake("torch", storage_type), key, "cpu", numel)


def rebuild(storage: StorageRef, offset: int, size: tuple, stride: tuple) -> Call:
    """``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`` as a pickled call."""
    return Call(Fake("torch._utils", "_rebuild_tensor_v2"), (storage, offset, size, stride, False, {}))


def write_marker(path: str) -> None:  # pragma: no cover - must never run when a test passes
    """A payload function: creates the marker file."""
    Path(path).write_text("executed")


class _Pickler(pickle._Pickler):
    """Pure-Python pickler that writes ``Fake`` objects as GLOBAL opcodes and ``StorageRef`` as persistent ids."""

    dispatch = dict(pickle._Pickler.dispatch)

    def persistent_id(self, obj: Any) -> Any:
        return obj.pid if isinstance(obj, StorageRef) else None

    def save_fake(self, obj: Fake) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    dispatch[Fake] = save_fake


_PICKLE_MODULE = types.ModuleType("foreign_fake_pickle")
_PICKLE_MODULE.Pickler = _Pickler  # type: ignore[attr-defined]


def fake_torch_save(obj: Any, path: Path) -> Path:
    """``torch.save`` through a pickler that understands ``Fake`` globals (torch archive layout, protocol 2)."""
    torch.save(obj, path, pickle_module=_PICKLE_MODULE)
    return path


def module(module_path: str, name: str, params: dict | None = None, buffers: dict | None = None,
           children: dict | None = None, **attributes: Any) -> Obj:  # fmt: skip
    """An nn.Module-like pickled object (the state layout torch modules have)."""
    state = {"training": False, "_parameters": dict(params or {}), "_buffers": dict(buffers or {}),
             "_non_persistent_buffers_set": set(), "_modules": dict(children or {}), **attributes}  # fmt: skip
    return Obj(Fake(module_path, name), state)


def conv_bn(c1: int, c2: int, seed: int) -> Obj:
    """A reference ``Conv`` (Conv2d + BatchNorm2d + SiLU) with fp16 tensors."""
    g = torch.Generator().manual_seed(seed)
    conv = module("torch.nn.modules.conv", "Conv2d", params={"weight": torch.randn(c2, c1, 1, 1, generator=g).half(),
                                                              "bias": None})  # fmt: skip
    bn = module("torch.nn.modules.batchnorm", "BatchNorm2d",
                params={"weight": torch.rand(c2, generator=g).half(), "bias": torch.randn(c2, generator=g).half()},
                buffers={"running_mean": torch.randn(c2, generator=g).half(),
                         "running_var": torch.rand(c2, generator=g).half() + 0.5,
                         "num_batches_tracked": torch.tensor(7)}, eps=1e-3)  # fmt: skip
    act = module("torch.nn.modules.activation", "SiLU")
    return module("ultralytics.nn.modules.conv", "Conv", children={"conv": conv, "bn": bn, "act": act}, i=0, f=-1)


def mini_checkpoint(train_args: dict | None = None, **extra: Any) -> dict:
    """A small reference-style checkpoint dict: DetectionModel -> Sequential -> two Convs, fp16 tensors."""
    seq = module("torch.nn.modules.container", "Sequential", children={"0": conv_bn(3, 4, 0), "1": conv_bn(4, 2, 1)})
    model = module("ultralytics.nn.tasks", "DetectionModel", children={"model": seq},
                   yaml={"nc": 2, "scales": {"n": [0.5, 0.25, 1024]}, "backbone": [], "head": [],
                         "scale": "n", "yaml_file": "yolo26n.yaml", "channels": 3},
                   names={0: "cat", 1: "dog"}, nc=2, stride=torch.tensor([8.0, 16.0, 32.0]).half())  # fmt: skip
    ckpt = {"date": "2025-01-02T03:04:05", "version": "8.4.190", "epoch": -1, "best_fitness": None, "model": model,
            "ema": None, "train_args": train_args if train_args is not None else {"imgsz": 320, "epochs": 3}}
    ckpt.update(extra)
    return ckpt


def write_archive(path: Path, entries: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    """A zip with exactly ``entries`` (name -> bytes)."""
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def read_entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def torch_layout(pickle_bytes: bytes, storages: dict[str, bytes] | None = None, folder: str = "archive",
                 byteorder: str | None = "little") -> dict[str, bytes]:  # fmt: skip
    """Entries of a torch archive around ``pickle_bytes``."""
    entries = {f"{folder}/data.pkl": pickle_bytes}
    if byteorder is not None:
        entries[f"{folder}/byteorder"] = byteorder.encode()
    entries.update({f"{folder}/data/{k}": v for k, v in (storages or {}).items()})
    entries[f"{folder}/version"] = b"3\n"
    return entries


def pickle_bytes(obj: Any, protocol: int = 2) -> bytes:
    """Pickle ``obj`` (which may contain ``Fake``/``Obj``/``Call``) with the pure-Python pickler."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=protocol).dump(obj)
    return buffer.getvalue()


def set_declared_size(path: Path, entry: str, size: int) -> None:
    """Rewrite the uncompressed size the zip declares for ``entry`` (central directory and local header)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        offset = archive.getinfo(entry).header_offset
    struct.pack_into("<I", data, offset + 22, size)
    start = data.find(b"PK\x01\x02")
    while start != -1:
        name_len = struct.unpack_from("<H", data, start + 28)[0]
        if data[start + 46 : start + 46 + name_len].decode() == entry:
            struct.pack_into("<I", data, start + 24, size)
        start = data.find(b"PK\x01\x02", start + 4)
    path.write_bytes(bytes(data))
