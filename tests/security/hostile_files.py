"""Writers of hostile and broken files: each a few bytes to a few MB that a careless reader turns into a crash, a
multi-GB allocation or a traceback. Used by the security tests (which load them in a memory-capped child)."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "weights"))  # foreign_helpers
from foreign_helpers import (  # noqa: E402
    Call,
    Fake,
    StorageRef,
    fake_torch_save,
    mini_checkpoint,
    module,
    pickle_bytes,
    rebuild,
    set_declared_size,
    torch_layout,
    write_archive,
)

__all__ = ["Call", "Fake", "fake_torch_save", "set_declared_size"]  # re-exported for the tests
DETECTION_MODEL = b"cultralytics.nn.tasks\nDetectionModel\n"


def deep_tuple(depth: int) -> bytes:
    """Pickle opcodes pushing ``((((1,),),),)`` nested ``depth`` levels (TUPLE1 repeated: 1 byte a level)."""
    return b"K\x01" + b"\x85" * depth


def deep_pickle_archive(path: Path, depth: int, where: str = "key", native: bool = False) -> Path:
    """A torch archive whose pickle nests a tuple ``depth`` levels deep as a dict key (``where='key'``), inside a
    set (``'set'``) or a frozenset (``'frozenset'``). ``native``: the pickle also carries yolokit's marker key, so
    the file is detected as a native ``.pt``; otherwise it references the reference's DetectionModel."""
    body = b"\x80\x04}"  # PROTO 4, EMPTY_DICT
    body += b"\x8c\x0eyolokit_formatK\x01s" if native else b"\x8c\x05model" + DETECTION_MODEL + b"s"
    if where == "key":
        body += deep_tuple(depth) + b"K\x02s"
    elif where == "set":
        body += b"\x8c\x01s\x8f(" + deep_tuple(depth) + b"\x90s"  # EMPTY_SET MARK item ADDITEMS
    else:
        body += b"\x8c\x01f(" + deep_tuple(depth) + b"\x91s"  # MARK item FROZENSET
    return write_archive(path, torch_layout(body + b"."))


def reference_checkpoint(path: Path, **model_attributes) -> Path:
    """The small reference-style checkpoint of ``foreign_helpers`` with model attributes replaced."""
    ckpt = mini_checkpoint()
    ckpt["model"].state.update(model_attributes)
    return fake_torch_save(ckpt, path)


def dag_checkpoint(path: Path, levels: int = 40) -> Path:
    """Module records where each level holds the level below twice: 2^levels paths, a few KB of pickle."""
    node = module("torch.nn.modules.conv", "Conv2d", params={"weight": torch.zeros(1)})
    for _ in range(levels):
        node = module("torch.nn.modules.container", "Sequential", children={"a": node, "b": node})
    ckpt = mini_checkpoint()
    ckpt["model"].state["_modules"] = {"model": node}
    return fake_torch_save(ckpt, path)


def zero_stride_checkpoint(path: Path, side: int = 100_000) -> Path:
    """A parameter of shape (side, side) viewing one 4-element storage with stride (0, 0): 16 bytes on disk, 40 GB
    when copied."""
    weight = rebuild(StorageRef("0", "FloatStorage", 4), 0, (side, side), (0, 0))
    conv = module("torch.nn.modules.conv", "Conv2d", params={"weight": weight})
    seq = module("torch.nn.modules.container", "Sequential", children={"0": conv})
    model = module("ultralytics.nn.tasks", "DetectionModel", children={"model": seq},
                   yaml={"nc": 1, "backbone": [], "head": []}, names={0: "a"}, nc=1)  # fmt: skip
    data = pickle_bytes({"model": model, "ema": None})
    return write_archive(path, torch_layout(data, {"0": bytes(16)}))


def copy_bomb_checkpoint(path: Path, items: int = 200_000, copies: int = 1000) -> Path:
    """One list of ``items`` ints referenced ``copies`` times as the argument of ``builtins.set``: ~1 MB of pickle,
    ``items * copies`` set entries if every call copied it."""
    shared = list(range(items))
    calls = [Call(Fake("builtins", "set"), (shared,)) for _ in range(copies)]
    model = module("ultralytics.nn.tasks", "DetectionModel")
    data = pickle_bytes({"model": model, "sets": calls})
    return write_archive(path, torch_layout(data))


def sparse_safetensors(path: Path, nbytes: int = 8 * 2**30) -> Path:
    """A safetensors file declaring one F32 tensor of ``nbytes`` bytes, made sparse (the disk holds a few KB)."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [nbytes // 4], "data_offsets": [0, nbytes]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(header)) + header)
        handle.truncate(8 + len(header) + nbytes)
    return path


def nested_json_safetensors(path: Path, depth: int = 100_000, in_metadata: bool = False) -> Path:
    """A safetensors file whose header (or a yolokit metadata value) nests JSON lists ``depth`` deep."""
    nested = "[" * depth + "]" * depth
    if in_metadata:
        meta = json.dumps({"yolokit_format": "1", "spec": nested})
        text = '{"__metadata__": ' + meta + "}"
    else:
        text = '{"x": ' + nested + "}"
    header = text.encode() + b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    return path


def billion_laughs(levels: int = 9, width: int = 10) -> str:
    """A YAML document of a few hundred bytes that expands to ``width ** levels`` strings."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def unpickled_huge_int_checkpoint(path: Path, bits: int = 100_000) -> Path:
    """A reference checkpoint whose train_args hold an int of ``bits`` bits (str() of it raises ValueError)."""
    return fake_torch_save(mini_checkpoint(train_args={"imgsz": 320, "seed": 1 << bits}), path)
