"""Tiny weights files for the registry tests: a 174k-parameter detector, fine-tuned copies, ONNX and INT8 exports.

Fixtures (import them into a test module): ``files`` (the tiny files, made once per session) and ``reg`` (an empty
registry in ``tmp_path``). Run as a script it is the child process of the concurrency and crash tests:

    python registry_helpers.py register GO REGISTRY NAME FILE...   # says GO.ready.PID, waits for GO, registers
    python registry_helpers.py crash REGISTRY NAME FILE MARKER      # stops after storing the blob (to be killed)
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

_BACKBONE = [[-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [16, 3, 2]],
             [-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [16, 3, 2]]]
TINY = {"nc": 3, "scales": {"n": [1.0, 1.0, 1024]}, "scale": "n", "backbone": _BACKBONE,
        "head": [[[2, 3, 4], 1, "Detect", ["nc"]]]}
NAMES = {0: "cat", 1: "dog", 2: "bird"}


def tiny_model(seed: int = 0, names: dict[int, str] | None = None) -> Any:
    import torch

    from yolokit.models.builder import build_model

    torch.manual_seed(seed)
    names = dict(names or NAMES)
    model = build_model(dict(TINY), num_classes=len(names))
    model.names = names
    return model.eval()


def save(model: Any, path: Path, **metadata: Any) -> Path:
    """``save_weights`` with extra metadata (``parent_sha256``, ``provenance``)."""
    from yolokit.weights import save_weights
    from yolokit.weights.metadata import build_metadata

    meta = build_metadata(model, imgsz=64, parent_sha256=metadata.pop("parent_sha256", None),
                          provenance=metadata.pop("provenance", None))
    return save_weights(model, path, metadata=meta)


def finetune(model: Any, seed: int = 1, layers: tuple[str, ...] = ("model.5.",)) -> Any:
    """A copy of ``model`` whose tensors under ``layers`` moved a little (the rest, e.g. the backbone, frozen)."""
    import copy

    import torch

    tuned = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in tuned.state_dict().items():
            if name.startswith(layers) and tensor.is_floating_point():
                tensor.add_(0.01 * torch.randn(tensor.shape, generator=generator))
    return tuned


def export_onnx_file(model: Any, path: Path) -> Path:
    from yolokit.export.onnx import export_onnx

    return export_onnx(model, path, imgsz=64)


def quantize_int8(fp32_onnx: Path, out: Path) -> Path:
    """INT8 (QDQ, per-channel Conv weights) with ONNX Runtime's quantizer, keeping the yolokit metadata_props."""
    import logging

    import numpy as np
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.batches = iter([{"images": rng.random((1, 3, 64, 64), dtype=np.float32)} for _ in range(2)])

        def get_next(self) -> Any:
            return next(self.batches, None)

    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # the quantizer warns about biases on the root logger
    try:
        quantize_static(str(fp32_onnx), str(out), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                        weight_type=QuantType.QInt8, per_channel=True)
    finally:
        logging.getLogger().setLevel(level)
    source, quantized = onnx.load(str(fp32_onnx)), onnx.load(str(out))
    del quantized.metadata_props[:]
    for prop in source.metadata_props:
        quantized.metadata_props.add(key=prop.key, value=prop.value)
    out.write_bytes(quantized.SerializeToString())
    return out


def distinct_files(folder: Path, count: int) -> list[Path]:
    """``count`` valid safetensors weights files with different bytes: one saved file, copied with the first value
    of ``model.0.bn.bias`` set to 0, 1, 2... (patched in place in the tensor data; the header is unchanged)."""
    import json
    import struct

    folder.mkdir(parents=True, exist_ok=True)
    base = save(tiny_model(), folder / "base.safetensors").read_bytes()
    header_len = struct.unpack("<Q", base[:8])[0]
    begin, _ = json.loads(base[8:8 + header_len])["model.0.bn.bias"]["data_offsets"]
    offset = 8 + header_len + begin
    paths = []
    for i in range(count):
        data = bytearray(base)
        data[offset:offset + 4] = struct.pack("<f", float(i))
        path = folder / f"w{i}.safetensors"
        path.write_bytes(bytes(data))
        paths.append(path)
    return paths


def distinct_onnx_files(folder: Path, count: int) -> list[Path]:
    """``count`` valid yolokit ONNX files with different bytes (the first weight of one Conv set to 0, 1, 2...).

    Registering ONNX needs no torch, so child processes registering them start in about half the time."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    proto = onnx.load_from_string(export_onnx_file(tiny_model(), folder / "base.onnx").read_bytes())
    init = next(i for i in proto.graph.initializer if i.name == "model.0.conv.weight")
    values = numpy_helper.to_array(init).copy()
    paths = []
    for i in range(count):
        values.flat[0] = np.float32(i)
        init.CopyFrom(numpy_helper.from_array(values, init.name))
        path = folder / f"w{i}.onnx"
        path.write_bytes(proto.SerializeToString())
        paths.append(path)
    return paths


@dataclasses.dataclass
class Files:
    pretrained: Path  # tiny model, fp32 safetensors
    finetuned: Path  # head (model.5) moved, backbone (model.0-4) unchanged; parent_sha256 = pretrained's
    half: Path  # the fine-tuned weights stored as fp16 (.pt)
    onnx: Path  # the fine-tuned weights exported to ONNX (fp32)
    int8: Path  # that ONNX quantized to INT8 (QDQ)
    renamed: Path  # the pretrained weights with class 2 renamed and a 4th class: another head shape


@pytest.fixture(scope="session")
def files(tmp_path_factory) -> Files:
    return _make_files(tmp_path_factory.getbasetemp() / "registry-files")


@functools.cache
def _make_files(root: Path) -> Files:
    """Made once per process even though each test module imports the fixture (a fixture per module)."""
    from yolokit.utils.io import sha256_file
    from yolokit.weights import save_weights

    root.mkdir(parents=True, exist_ok=True)
    model = tiny_model()
    pretrained = save(model, root / "pretrained.safetensors")
    tuned = finetune(model)
    provenance = {"metrics": {"map50": 0.61, "map": 0.42}, "train_args": {"epochs": 1, "lr0": 0.002},
                  "dataset_fingerprint": "f" * 64}
    finetuned = save(tuned, root / "finetuned.safetensors", parent_sha256=sha256_file(pretrained),
                     provenance=provenance)
    half = save_weights(tuned, root / "finetuned-half.pt", half=True)
    onnx = export_onnx_file(tuned, root / "finetuned.onnx")
    int8 = quantize_int8(onnx, root / "finetuned_int8.onnx")
    renamed = save(tiny_model(seed=3, names={0: "cat", 1: "dog", 2: "sparrow", 3: "fish"}),
                   root / "renamed.safetensors")
    return Files(pretrained, finetuned, half, onnx, int8, renamed)


@pytest.fixture
def reg(tmp_path):
    from yolokit.registry import Registry

    return Registry(tmp_path / "registry")


def _child_register(go: str, registry: str, name: str, files: list[str]) -> None:
    from yolokit.registry import Registry
    from yolokit.registry.describe import describe_file

    describe_file(files[0])  # imports done before the start signal, so the children's registrations overlap
    Path(f"{go}.ready.{os.getpid()}").touch()
    deadline = time.monotonic() + 60
    while not Path(go).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    reg = Registry(registry)
    for file in files:
        print(reg.register(name, file).ref, flush=True)


def _child_crash(registry: str, name: str, file: str, marker: str) -> None:
    from yolokit.registry import Registry
    from yolokit.registry.registry import STAGE_HOOKS

    def stop(stage: str) -> None:
        if stage == "blob-stored":
            Path(marker).write_text("blob stored")
            time.sleep(120)  # killed here by the test

    STAGE_HOOKS.append(stop)
    Registry(registry).register(name, file)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "register":
        _child_register(args[0], args[1], args[2], args[3:])
    elif command == "crash":
        _child_crash(*args)
    else:
        raise SystemExit(f"unknown command {command}")
