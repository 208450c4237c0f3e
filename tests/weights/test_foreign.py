"""Reference (Ultralytics) checkpoint import: restricted unpickler, metadata, robustness, malicious pickles."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import pickle
import struct
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import torch
from foreign_helpers import (
    FIXTURES,
    Call,
    Fake,
    Obj,
    StorageRef,
    fake_torch_save,
    mini_checkpoint,
    module,
    pickle_bytes,
    read_entries,
    rebuild,
    set_declared_size,
    torch_layout,
    write_archive,
    write_marker,
)

from yolokit.errors import UnsafeWeightsError, WeightsError
from yolokit.weights import _foreign_archive, _foreign_pickle
from yolokit.weights.foreign import load_checkpoint, read_ultralytics, scan_globals

V8_GLOBALS = {
    "ultralytics.nn.tasks.DetectionModel", "ultralytics.nn.modules.conv.Conv", "ultralytics.nn.modules.conv.Concat",
    "ultralytics.nn.modules.block.C2f", "ultralytics.nn.modules.block.Bottleneck", "ultralytics.nn.modules.block.SPPF",
    "ultralytics.nn.modules.block.DFL", "ultralytics.nn.modules.head.Detect",
    "torch.nn.modules.conv.Conv2d", "torch.nn.modules.batchnorm.BatchNorm2d", "torch.nn.modules.activation.SiLU",
    "torch.nn.modules.pooling.MaxPool2d", "torch.nn.modules.upsampling.Upsample",
    "torch.nn.modules.container.Sequential", "torch.nn.modules.container.ModuleList",
    "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter", "torch.HalfStorage", "torch.FloatStorage",
    "torch.LongStorage", "collections.OrderedDict", "__builtin__.set",
}  # fmt: skip
V11_EXTRA = {"ultralytics.nn.modules.block." + n for n in ("C3k2", "C3k", "C2PSA", "PSABlock", "Attention")} | {
    "ultralytics.nn.modules.conv.DWConv", "torch.nn.modules.linear.Identity"}  # fmt: skip
EXPECTED_GLOBALS = {
    "yolov8": V8_GLOBALS, "yolo11": (V8_GLOBALS | V11_EXTRA) - {"ultralytics.nn.modules.block.C2f"},
    "yolo26": (V8_GLOBALS | V11_EXTRA) - {"ultralytics.nn.modules.block.C2f", "ultralytics.nn.modules.block.DFL"},
}  # fmt: skip
KEY_COUNTS = {"yolov8": 355, "yolo11": 499, "yolo26": 708}


def assert_one_line(exc: pytest.ExceptionInfo, path: pathlib.Path) -> None:
    message = str(exc.value)
    assert "\n" not in message and path.name in message, message


# --- the reference fixtures ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["yolov8", "yolo11", "yolo26"])
def test_scan_globals_of_reference_fixtures(family: str) -> None:
    refs = scan_globals(FIXTURES / f"{family}-tiny-random.pt")
    assert {r.qualname for r in refs} == EXPECTED_GLOBALS[family]
    assert all(r.allowed for r in refs)
    assert len(refs) == len({(r.module, r.name) for r in refs})  # deduplicated


@pytest.mark.parametrize("family", ["yolov8", "yolo11", "yolo26"])
def test_read_random_fixture(family: str) -> None:
    path = FIXTURES / f"{family}-tiny-random.pt"
    state_dict, meta = read_ultralytics(path)
    assert len(state_dict) == KEY_COUNTS[family]
    assert list(state_dict)[:3] == ["model.0.conv.weight", "model.0.bn.weight", "model.0.bn.bias"]
    dtypes = {k: v.dtype for k, v in state_dict.items()}
    assert {d for k, d in dtypes.items() if k.endswith("num_batches_tracked")} == {torch.int64}
    assert {d for k, d in dtypes.items() if not k.endswith("num_batches_tracked")} == {torch.float32}
    assert meta["task"] == "detect" and meta["format_version"] == 1
    assert meta["names"] == {0: "0", 1: "1", 2: "2"} and meta["spec"]["nc"] == 3
    assert meta["stride"] == [8, 16, 32] and meta["imgsz"] == 640
    assert meta["spec"]["yaml_file"] == f"{family}-tiny.yaml" and meta["spec"]["backbone"][0][2] == "Conv"
    assert meta["spec"].get("end2end", False) is (family == "yolo26")
    prov = meta["provenance"]
    assert prov["source"] == "ultralytics" and prov["reference_version"] == "8.4.190"
    assert prov["source_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() == meta["parent_sha256"]
    assert prov["date"].startswith("20")
    json.dumps(meta)  # plain JSON types only


@pytest.mark.parametrize("family", ["yolov8", "yolo11", "yolo26"])
def test_read_trained_shapes_fixture(family: str) -> None:
    state_dict, meta = read_ultralytics(FIXTURES / f"{family}-tiny-shapes.pt")
    assert len(state_dict) == KEY_COUNTS[family]
    assert meta["names"] == {0: "rectangle", 1: "ellipse", 2: "triangle"}
    assert meta["imgsz"] == 320
    prov = meta["provenance"]
    assert prov["epoch"] == -1 and prov["train_args"]["epochs"] == 60 and prov["train_args"]["imgsz"] == 320
    assert 0 < prov["train_metrics"]["fitness"] < 1
    assert "ultralytics" not in sys.modules


# --- hand-made checkpoints -----------------------------------------------------------------------------------------
def test_values_are_exact_fp16_to_fp32(tmp_path: pathlib.Path) -> None:
    ckpt = mini_checkpoint()
    conv0 = ckpt["model"].state["_modules"]["model"].state["_modules"]["0"]
    expected = conv0.state["_modules"]["conv"].state["_parameters"]["weight"]
    state_dict, meta = read_ultralytics(fake_torch_save(ckpt, tmp_path / "m.pt"))
    assert torch.equal(state_dict["model.0.conv.weight"], expected.float())
    assert state_dict["model.1.bn.num_batches_tracked"].item() == 7
    assert "model.0.conv.bias" not in state_dict  # a None parameter is skipped like nn.Module.state_dict
    assert meta["names"] == {0: "cat", 1: "dog"} and meta["imgsz"] == 320
    assert meta["provenance"]["train_args"] == {"imgsz": 320, "epochs": 3}


def test_ema_is_preferred_and_bare_model_is_accepted(tmp_path: pathlib.Path) -> None:
    ema, model = mini_checkpoint()["model"], mini_checkpoint()["model"]
    ema.state["names"] = {0: "a", 1: "b"}
    _, meta = read_ultralytics(fake_torch_save(mini_checkpoint(model=model, ema=ema), tmp_path / "e.pt"))
    assert meta["names"] == {0: "a", 1: "b"}
    _, meta = read_ultralytics(fake_torch_save(model, tmp_path / "bare.pt"))
    assert meta["names"] == {0: "cat", 1: "dog"} and meta["imgsz"] == 640
    assert meta["provenance"]["reference_version"] is None


def test_names_list_and_nc_override(tmp_path: pathlib.Path) -> None:
    ckpt = mini_checkpoint()
    ckpt["model"].state.update(names=["x", "y", "z"], nc=3)
    _, meta = read_ultralytics(fake_torch_save(ckpt, tmp_path / "n.pt"))
    assert meta["names"] == {0: "x", 1: "y", 2: "z"} and meta["spec"]["nc"] == 3


@pytest.mark.parametrize(
    ("ckpt", "match"),
    [
        ({"date": "x", "version": "8.4"}, "no 'model' or 'ema'"),
        ({"model": None, "ema": None}, "no 'model' or 'ema'"),
        ([1, 2, 3], "expected a checkpoint dict"),
        ({"model": {"model.0.conv.weight": torch.zeros(1)}}, "plain state_dict"),
        ({"model": module("ultralytics.nn.modules.conv", "Conv")}, "expected a reference DetectionModel"),
    ],
)
def test_checkpoints_without_a_model(tmp_path: pathlib.Path, ckpt: object, match: str) -> None:
    path = fake_torch_save(ckpt, tmp_path / "no_model.pt")
    with pytest.raises(WeightsError, match=match) as exc:
        read_ultralytics(path)
    assert_one_line(exc, path)


def test_yolov5_checkpoint_with_layers_yolokit_lacks_is_named(tmp_path: pathlib.Path) -> None:
    obj = {"model": Obj(Fake("models.yolo", "DetectionModel"), {"_modules": {"0": Obj(Fake("models.common", "C3TR"))}})}
    path = fake_torch_save(obj, tmp_path / "v5.pt")
    with pytest.raises(WeightsError, match="YOLOv5 checkpoint .* these layers are not supported") as exc:
        read_ultralytics(path)
    assert not isinstance(exc.value, UnsafeWeightsError)


def test_non_detect_task_is_refused(tmp_path: pathlib.Path) -> None:
    ckpt = mini_checkpoint()
    ckpt["model"].cls = Fake("ultralytics.nn.tasks", "SegmentationModel")
    with pytest.raises(WeightsError, match="segment task"):
        read_ultralytics(fake_torch_save(ckpt, tmp_path / "seg.pt"))


def test_cyclic_module_tree_is_refused(tmp_path: pathlib.Path) -> None:
    ckpt = mini_checkpoint()
    ckpt["model"].state["_modules"]["model"].state["_modules"]["loop"] = ckpt["model"]
    with pytest.raises(WeightsError, match="cyclic"):
        read_ultralytics(fake_torch_save(ckpt, tmp_path / "cycle.pt"))


def test_extra_globals_become_plain_metadata(tmp_path: pathlib.Path) -> None:
    ns_state = {"lr0": 0.01, "save_dir": pathlib.PurePosixPath("/r")}
    ns = Obj(Fake("ultralytics.utils", "IterableSimpleNamespace"), ns_state)
    old_ns = Obj(Fake("ultralytics.yolo.utils", "IterableSimpleNamespace"), {"batch": 8})
    train_args = {
        "imgsz": [320], "data": pathlib.PosixPath("/data/shapes.yaml"), "win": pathlib.PureWindowsPath("C:/x"),
        "ns": ns, "old": old_ns, "fit": np.float64(0.25), "n": np.int64(3), "arr": np.arange(3, dtype=np.int32),
        "ids": {1, 2}, "fz": frozenset([4]), "sl": slice(1, 5, 2), "z": complex(1, 2), "blob": b"\x01\x02",
        "fwd": Call(getattr, (Fake("ultralytics.nn.modules.head", "Detect"), "forward")),
    }  # fmt: skip
    metrics = {"fitness": np.float64(1.5)}
    ckpt = mini_checkpoint(train_args=train_args, best_fitness=np.float32(0.5), train_metrics=metrics)
    _, meta = read_ultralytics(fake_torch_save(ckpt, tmp_path / "extras.pt"))
    args = meta["provenance"]["train_args"]
    assert args["data"] == "/data/shapes.yaml" and args["win"] == "C:\\x"
    assert args["ns"] == {"lr0": 0.01, "save_dir": "/r"} and args["old"] == {"batch": 8}
    assert args["fit"] == 0.25 and args["n"] == 3 and args["arr"] == [0, 1, 2]
    assert sorted(args["ids"]) == [1, 2] and args["fz"] == [4] and args["sl"] == "slice(1, 5, 2)"
    assert args["z"] == [1.0, 2.0] and args["blob"] == "0102"
    assert args["fwd"] == "<getattr <ultralytics.nn.modules.head.Detect>.forward>"
    assert meta["imgsz"] == 320
    assert meta["provenance"]["best_fitness"] == 0.5 and meta["provenance"]["train_metrics"] == {"fitness": 1.5}
    json.dumps(meta)


def test_big_endian_archive(tmp_path: pathlib.Path) -> None:
    values = np.array([1.5, -2.25, 3.0, 65504.0], dtype=np.float32)
    weight = rebuild(StorageRef("0"), 0, (4, 1, 1, 1), (1, 1, 1, 1))
    conv = module("torch.nn.modules.conv", "Conv2d", params={"weight": weight})
    seq = module("torch.nn.modules.container", "Sequential", children={"0": conv})
    ckpt = {"model": module("ultralytics.nn.tasks", "DetectionModel", children={"model": seq}, yaml={"nc": 1})}
    entries = torch_layout(pickle_bytes(ckpt), {"0": values.astype(">f4").tobytes()}, byteorder="big")
    state_dict, _ = read_ultralytics(write_archive(tmp_path / "be.pt", entries))
    assert state_dict["model.0.weight"].flatten().tolist() == values.tolist()


# --- robustness: every broken file gives one clear line ------------------------------------------------------------
def _fixture_entries() -> dict[str, bytes]:
    return read_entries(FIXTURES / "yolov8-tiny-random.pt")


def _broken_files(tmp_path: pathlib.Path) -> dict[str, tuple[pathlib.Path, str]]:
    src = (FIXTURES / "yolov8-tiny-random.pt").read_bytes()
    entries = _fixture_entries()
    folder = "yolov8-tiny-random"
    cases: dict[str, tuple[bytes | dict[str, bytes], str]] = {
        "empty": (b"", "expected a torch zip archive"),
        "wrong_magic": (b"GIF89a not weights", "expected a torch zip archive"),
        "legacy": (b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19.", "legacy"),
        "truncated_half": (src[: len(src) // 2], "not a readable torch zip archive"),
        "truncated_tail": (src[:-30], "not a readable torch zip archive"),
        "no_data_pkl": ({k: v for k, v in entries.items() if not k.endswith("data.pkl")}, "found no"),
        "two_data_pkl": ({**entries, "other/data.pkl": b"."}, "found 2"),
        "missing_storage": ({k: v for k, v in entries.items() if k != f"{folder}/data/3"}, "storage '3'"),
        "short_storage": ({**entries, f"{folder}/data/3": entries[f"{folder}/data/3"][:10]}, "truncated"),
        "bad_byteorder": ({**entries, f"{folder}/byteorder": b"middle"}, "byteorder"),
        "garbage_pickle": ({**entries, f"{folder}/data.pkl": b"\x80\x02}q\x00(X\x01"}, "malformed checkpoint pickle"),
    }
    out = {}
    for name, (content, match) in cases.items():
        path = tmp_path / f"{name}.pt"
        if isinstance(content, dict):
            write_archive(path, content)
        else:
            path.write_bytes(content)
        out[name] = (path, match)
    return out


def test_broken_archives_give_one_line_errors(tmp_path: pathlib.Path) -> None:
    for name, (path, match) in _broken_files(tmp_path).items():
        for reader in (read_ultralytics, scan_globals):
            if reader is scan_globals and name in ("missing_storage", "short_storage"):
                continue  # the scan does not read storages
            with pytest.raises(WeightsError, match=match) as exc:
                reader(path)
            assert_one_line(exc, path)
            assert not isinstance(exc.value, UnsafeWeightsError), name


def test_missing_file_and_directory(tmp_path: pathlib.Path) -> None:
    for path in (tmp_path / "absent.pt", tmp_path):
        with pytest.raises(WeightsError, match="not found"):
            read_ultralytics(path)


def test_crc_mismatch_is_reported(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "crc.pt"
    data = bytearray((FIXTURES / "yolov8-tiny-random.pt").read_bytes())
    with zipfile.ZipFile(FIXTURES / "yolov8-tiny-random.pt") as archive:
        offset = archive.getinfo("yolov8-tiny-random/data/5").header_offset
    name_len, extra_len = struct.unpack_from("<HH", data, offset + 26)
    start = offset + 30 + name_len + extra_len
    data[start] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="CRC") as exc:
        read_ultralytics(path)
    assert_one_line(exc, path)


@pytest.mark.parametrize("offset,size,stride,message", [
    (2, (3,), (1,), "needs 5 elements but storage '0' holds 4"),  # runs past the end of its storage
    (0, (2**50,), (0,), "implausibly large"),  # a zero-stride view would "hold" 2**50 floats
])
def test_bad_tensor_view_is_refused(tmp_path: pathlib.Path, offset: int, size: tuple, stride: tuple,
                                    message: str) -> None:
    weight = rebuild(StorageRef("0", numel=4), offset, size, stride)
    conv = module("torch.nn.modules.conv", "Conv2d", params={"weight": weight})
    seq = module("torch.nn.modules.container", "Sequential", children={"0": conv})
    ckpt = {"model": module("ultralytics.nn.tasks", "DetectionModel", children={"model": seq}, yaml={"nc": 1})}
    path = write_archive(tmp_path / "view.pt", torch_layout(pickle_bytes(ckpt), {"0": bytes(16)}))
    with pytest.raises(WeightsError, match=message) as exc:
        read_ultralytics(path)
    assert_one_line(exc, path)


def test_absurd_declared_pickle_size_is_refused_before_reading(tmp_path: pathlib.Path) -> None:
    path = write_archive(tmp_path / "bomb.pt", _fixture_entries())
    set_declared_size(path, "yolov8-tiny-random/data.pkl", 0xFFFFFFF0)
    start = time.perf_counter()
    with pytest.raises(WeightsError, match="refused before reading") as exc:
        scan_globals(path)
    assert time.perf_counter() - start < 1.0
    assert_one_line(exc, path)


def test_deflate_bomb_storage_is_refused(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entries = _fixture_entries()
    entries["yolov8-tiny-random/data/0"] = bytes(8 * 2**20)  # compresses to ~8 KiB
    path = write_archive(tmp_path / "deflate.pt", entries, compression=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 2**20
    monkeypatch.setattr(_foreign_archive, "MAX_STORAGE_BYTES", 2**20)
    with pytest.raises(WeightsError, match="'yolov8-tiny-random/data/0' .*refused before reading"):
        read_ultralytics(path)


def test_total_storage_above_memory_is_refused(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_foreign_archive, "available_memory", lambda: 1000)
    with pytest.raises(WeightsError, match="more than the 1000 bytes this process may allocate"):
        read_ultralytics(FIXTURES / "yolov8-tiny-random.pt")


def test_any_folder_name_is_accepted(tmp_path: pathlib.Path) -> None:
    entries = {k.replace("yolov8-tiny-random/", "renamed.folder/"): v for k, v in _fixture_entries().items()}
    state_dict, _ = read_ultralytics(write_archive(tmp_path / "renamed.pt", entries))
    assert len(state_dict) == KEY_COUNTS["yolov8"]


# --- malicious pickles: refused, named, never executed -------------------------------------------------------------
def _payloads(marker: pathlib.Path) -> dict[str, tuple[object, str]]:
    touch = f"touch {marker}"
    return {
        "os_system_reduce": (Call(os.system, (touch,)), "posix.system"),
        "marker_function": (Call(write_marker, (str(marker),)), "foreign_helpers.write_marker"),
        "builtins_exec": (Call(exec, (f"open({str(marker)!r}, 'w').close()",)), "builtins.exec"),
        "builtins_eval": (Call(eval, (f"open({str(marker)!r}, 'w')",)), "builtins.eval"),
        "os_system_named": (Call(Fake("os", "system"), (touch,)), "os.system"),
        "subprocess_popen": (Call(subprocess.Popen, (["touch", str(marker)],)), "subprocess.Popen"),
        "posix_system": (Call(Fake("posix", "system"), (touch,)), "posix.system"),
        "nt_system": (Call(Fake("nt", "system"), (touch,)), "nt.system"),
        "runpy": (Call(Fake("runpy", "run_path"), (str(marker),)), "runpy.run_path"),
        "importlib": (Call(Fake("importlib", "import_module"), ("os",)), "importlib.import_module"),
        "unknown_class": (Obj(Fake("ultralytics.nn.modules.evil", "Backdoor"), {}), "ultralytics.nn.modules.evil"),
        "in_train_args": (mini_checkpoint(train_args={"a": [{"b": Call(os.system, (touch,))}]}), "posix.system"),
        "in_module_attributes": (_module_with_payload(touch), "posix.system"),
    }


def _module_with_payload(command: str) -> dict:
    ckpt = mini_checkpoint()
    ckpt["model"].state["_modules"]["model"].state["_modules"]["0"].state["hook"] = Call(os.system, (command,))
    return ckpt


@pytest.mark.parametrize("case", list(_payloads(pathlib.Path("m")).keys()))
def test_malicious_pickle_is_refused_and_not_executed(tmp_path: pathlib.Path, case: str) -> None:
    marker = tmp_path / "MARKER"
    obj, qualname = _payloads(marker)[case]
    path = fake_torch_save(obj, tmp_path / f"{case}.pt")
    refs = scan_globals(path)
    assert any(not r.allowed and r.resolved.startswith(qualname) for r in refs)
    for reader in (read_ultralytics, load_checkpoint):
        with pytest.raises(UnsafeWeightsError, match=qualname.replace(".", r"\.")) as exc:
            reader(path)
        assert_one_line(exc, path)
    assert not marker.exists()


def test_the_payload_is_live_with_a_plain_unpickler(tmp_path: pathlib.Path) -> None:
    """Control: the os.system payload really runs under pickle.loads, so the refusals above are meaningful."""
    marker = tmp_path / "MARKER"
    data = pickle_bytes(Call(os.system, (f"touch {marker}",)))
    pickle.loads(data)
    assert marker.exists()


def _handwritten(marker: pathlib.Path) -> dict[str, tuple[bytes, str]]:
    cmd = f"touch {marker}".encode()
    short = bytes([len(cmd)])
    return {
        # protocol 0 INST opcode
        "inst": (b"(S'" + cmd + b"'\nios\nsystem\n.", "os.system"),
        # protocol 4 STACK_GLOBAL whose operands come from the memo
        "stack_global_memo": (b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94h\x00h\x01\x93\x8c" + short + cmd + b"\x85R.",
                              "os.system"),  # fmt: skip
        # the extension registry (EXT1)
        "ext1": (b"\x80\x02\x82\x01\x8c" + short + cmd + b"\x85R.", "copyreg extension code.1"),
    }


@pytest.mark.parametrize("case", ["inst", "stack_global_memo", "ext1"])
def test_handwritten_opcode_payloads(tmp_path: pathlib.Path, case: str) -> None:
    marker = tmp_path / "MARKER"
    data, qualname = _handwritten(marker)[case]
    path = write_archive(tmp_path / f"{case}.pt", torch_layout(data))
    assert any(r.qualname == qualname and not r.allowed for r in scan_globals(path))
    with pytest.raises(UnsafeWeightsError):
        read_ultralytics(path)
    unpickler = _foreign_pickle._Unpickler(_foreign_pickle.TorchArchive(path))  # the unpickler alone, no pre-scan
    with pytest.raises(UnsafeWeightsError):
        unpickler.load()
    assert not marker.exists()


def test_allowed_globals_cannot_be_chained_into_calls(tmp_path: pathlib.Path) -> None:
    """getattr yields an inert record, so calling its result (getattr(x, 'system')(...)) is refused."""
    marker = tmp_path / "MARKER"
    chained = Call(Call(getattr, (Fake("collections", "OrderedDict"), "fromkeys")), (str(marker),))
    tensor = rebuild(StorageRef("0"), 0, (4,), (1,))
    build_on_tensor = Call(tensor.fn, tensor.args, state={"requires_grad": True})  # BUILD on a tensor
    for name, obj in (("chain", chained), ("build", build_on_tensor)):
        path = write_archive(tmp_path / f"{name}.pt", torch_layout(pickle_bytes({"model": obj}), {"0": bytes(16)}))
        assert all(r.allowed for r in scan_globals(path))
        with pytest.raises(WeightsError, match="malformed checkpoint pickle"):
            load_checkpoint(path)
    assert not marker.exists()


def test_rebuild_tensor_v3_over_untyped_storage(tmp_path: pathlib.Path) -> None:
    values = np.array([0.5, -1.0, 2.0], dtype=np.float16)
    storage = StorageRef("0", storage_type="UntypedStorage", numel=6)
    weight = Call(Fake("torch._utils", "_rebuild_tensor_v3"),
                  (storage, 0, (3,), (1,), False, {}, Fake("torch", "float16")))  # fmt: skip
    conv = module("torch.nn.modules.conv", "Conv2d", params={"weight": weight})
    seq = module("torch.nn.modules.container", "Sequential", children={"0": conv})
    ckpt = {"model": module("ultralytics.nn.tasks", "DetectionModel", children={"model": seq}, yaml={"nc": 1})}
    path = write_archive(tmp_path / "v3.pt", torch_layout(pickle_bytes(ckpt), {"0": values.tobytes()}))
    state_dict, _ = read_ultralytics(path)
    assert state_dict["model.0.weight"].dtype == torch.float32
    assert state_dict["model.0.weight"].tolist() == values.astype(np.float32).tolist()


def test_container_opcodes_only_fill_real_containers(tmp_path: pathlib.Path) -> None:
    """ADDITEMS on a tensor would call tensor.add(...): refused, like APPENDS/SETITEMS on a non-container."""
    tensor = pickle_bytes(rebuild(StorageRef("0"), 0, (4,), (1,)))
    assert tensor.endswith(b".")
    for name, tail in (("additems", b"(K\x01\x90."), ("appends", b"(K\x01e."), ("setitems", b"(K\x01K\x02u.")):
        path = write_archive(tmp_path / f"{name}.pt", torch_layout(tensor[:-1] + tail, {"0": bytes(16)}))
        with pytest.raises(WeightsError, match="adds items to a Tensor"):
            load_checkpoint(path)
    good = pickle_bytes([1, {2: 3}, {4}], protocol=4)  # real containers still work (protocol 4 uses ADDITEMS)
    assert load_checkpoint(write_archive(tmp_path / "ok.pt", torch_layout(good))) == [1, {2: 3}, {4}]
