"""Native weights files: bit-exact round trips and refusal of malformed safetensors / .pt files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from torch import nn

from yolokit.errors import WeightsError
from yolokit.weights import detect_format, native, read_weights
from yolokit.weights.metadata import build_metadata, normalize_metadata

SPEC = {"nc": 2, "backbone": [[-1, 1, "Conv", [8, 3, 2]]], "head": [[-1, 1, "Detect", ["nc"]]], "scale": "n"}


class TinyNet(nn.Module):
    """Stand-in with the attributes a DetectionModel carries (spec, names, stride) and BN buffers."""

    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.Conv2d(8, 6, 1))
        self.spec = dict(SPEC)
        self.names = {0: "cat", 1: "dog"}
        self.stride = torch.tensor([8.0, 16.0, 32.0])


def _tiny_state() -> tuple[TinyNet, dict]:
    torch.manual_seed(0)
    net = TinyNet()
    bn = net.model[1]
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2.0)
    bn.num_batches_tracked.fill_(7)
    return net, net.state_dict()


WRITERS = {"safetensors": native.write_safetensors, "yolokit-pt": native.write_native_pt}
SUFFIX = {"safetensors": ".safetensors", "yolokit-pt": ".pt"}


def _same_bytes(a: torch.Tensor, b: torch.Tensor) -> bool:
    same_layout = a.dtype == b.dtype and a.shape == b.shape
    return same_layout and a.reshape(-1).view(torch.uint8).equal(b.reshape(-1).view(torch.uint8))


@pytest.mark.parametrize("fmt", ["safetensors", "yolokit-pt"])
@pytest.mark.parametrize("half", [False, True])
def test_round_trip_is_bit_exact(tmp_path: Path, fmt: str, half: bool) -> None:
    net, state = _tiny_state()
    meta = build_metadata(net, provenance={"source": "test", "metrics": {"map50": 0.5}}, imgsz=320)
    path = WRITERS[fmt](tmp_path / f"w{SUFFIX[fmt]}", state, meta, half=half)
    wf = read_weights(path)
    assert wf.format == fmt
    assert list(wf.state_dict) == list(state)
    float_dtype = torch.float16 if half else torch.float32
    for name, tensor in state.items():
        expected = tensor.to(float_dtype) if tensor.is_floating_point() else tensor
        assert _same_bytes(wf.state_dict[name], expected), name
    assert wf.state_dict["model.1.num_batches_tracked"].dtype == torch.int64
    assert wf.state_dict["model.1.num_batches_tracked"].item() == 7
    assert wf.metadata == meta
    assert wf.metadata["names"] == {0: "cat", 1: "dog"} and wf.metadata["stride"] == [8, 16, 32]
    assert len(wf.sha256) == 64 and wf.path == path


def test_safetensors_layout_and_metadata_encoding(tmp_path: Path) -> None:
    net, state = _tiny_state()
    path = native.write_safetensors(tmp_path / "w.safetensors", state, build_metadata(net))
    data = path.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    meta = header["__metadata__"]
    assert json.loads(meta["yolokit_format"]) == 1
    assert json.loads(meta["names"]) == {"0": "cat", "1": "dog"}  # JSON-encoded string values, str keys
    assert json.loads(meta["spec"]) == SPEC and json.loads(meta["task"]) == "detect"
    assert header["model.0.weight"]["dtype"] == "F32" and header["model.0.weight"]["shape"] == [8, 3, 3, 3]
    assert header["model.1.num_batches_tracked"]["dtype"] == "I64"


def test_safetensors_is_deterministic_and_readable_by_the_safetensors_library(tmp_path: Path) -> None:
    from safetensors import safe_open

    net, state = _tiny_state()
    meta = build_metadata(net, provenance={"b": 1, "a": 2})
    first = native.write_safetensors(tmp_path / "a.safetensors", state, meta, half=True)
    second = native.write_safetensors(tmp_path / "b.safetensors", state, meta, half=True)
    assert first.read_bytes() == second.read_bytes()
    with safe_open(str(first), framework="pt") as handle:
        assert handle.metadata()["yolokit_format"] == "1"
        assert list(handle.keys()) == sorted(state)
        for name in state:
            expected = state[name].half() if state[name].is_floating_point() else state[name]
            assert torch.equal(handle.get_tensor(name), expected)


def test_native_pt_loads_with_weights_only(tmp_path: Path) -> None:
    net, state = _tiny_state()
    path = native.write_native_pt(tmp_path / "w.pt", state, build_metadata(net), half=True)
    payload = torch.load(path, weights_only=True)
    assert payload["yolokit_format"] == 1 and payload["yolokit"] == {"format_version": 1}
    assert payload["metadata"]["names"] == {"0": "cat", "1": "dog"}
    assert payload["state_dict"]["model.0.weight"].dtype == torch.float16
    assert set(payload) == {"yolokit_format", "yolokit", "metadata", "state_dict"}


def test_safetensors_to_pt_to_safetensors_is_identical(tmp_path: Path) -> None:
    net, state = _tiny_state()
    meta = build_metadata(net)
    first = native.write_safetensors(tmp_path / "a.safetensors", state, meta)
    sd1, meta1 = native.read_safetensors(first)
    middle = native.write_native_pt(tmp_path / "b.pt", sd1, normalize_metadata(meta1))
    sd2, meta2 = native.read_native_pt(middle)
    last = native.write_safetensors(tmp_path / "c.safetensors", sd2, normalize_metadata(meta2))
    assert last.read_bytes() == first.read_bytes()


def test_foreign_safetensors_without_marker_reads_with_empty_metadata(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    _, state = _tiny_state()
    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata={"format": "pt"})
    wf = read_weights(path)
    assert wf.metadata == {} and wf.format == "safetensors"
    assert torch.equal(wf.state_dict["model.0.weight"], state["model.0.weight"])


# --- malformed files ----------------------------------------------------------------------------------------------
def _valid_file(tmp_path: Path) -> tuple[Path, bytes, int, dict]:
    net, state = _tiny_state()
    path = native.write_safetensors(tmp_path / "good.safetensors", state, build_metadata(net))
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return path, data, n, json.loads(data[8 : 8 + n])


def _with_header(data: bytes, n: int, header: dict) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data[8 + n :]


def _bad_cases(tmp_path: Path) -> dict[str, tuple[bytes, str]]:
    _, data, n, header = _valid_file(tmp_path)
    shifted = json.loads(json.dumps(header))
    shifted["model.0.weight"]["data_offsets"] = [o + 4 for o in shifted["model.0.weight"]["data_offsets"]]
    overlap = json.loads(json.dumps(header))
    overlap["model.1.bias"]["data_offsets"] = header["model.1.weight"]["data_offsets"]  # both 8 floats
    bad_dtype = json.loads(json.dumps(header))
    bad_dtype["model.2.bias"]["dtype"] = "Q4"
    return {
        "truncated": (data[:-10], "truncated"),
        "corrupt_json": (data[:8] + b"{" + b"x" * (n - 1) + data[8 + n :], "not valid JSON"),
        "oversized_header": (struct.pack("<Q", 200 * 1024 * 1024) + data[8:], "100 MB"),
        "header_past_end": (struct.pack("<Q", len(data)) + data[8:], "exceeds the file size"),
        "wrong_offsets": (_with_header(data, n, shifted), "offsets"),
        "overlapping_offsets": (_with_header(data, n, overlap), "overlaps"),
        "trailing_bytes": (data + b"\0" * 8, "trailing bytes"),
        "unknown_dtype": (_with_header(data, n, bad_dtype), "unknown dtype 'Q4'"),
        "random_bytes": (bytes(range(7, 250)) * 3, "unrecognised weights file"),
        "empty": (b"", "empty"),
        "short_text": (b"hello", "unrecognised"),
        "corrupt_zip": (b"PK\x03\x04" + b"\0" * 100, "corrupt"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "truncated", "corrupt_json", "oversized_header", "header_past_end", "wrong_offsets", "overlapping_offsets",
        "trailing_bytes", "unknown_dtype", "random_bytes", "empty", "short_text", "corrupt_zip",
    ],
)  # fmt: skip
def test_bad_files_raise_weights_error_naming_the_file(tmp_path: Path, case: str) -> None:
    data, expected = _bad_cases(tmp_path)[case]
    path = tmp_path / f"bad_{case}.safetensors"
    path.write_bytes(data)
    with pytest.raises(WeightsError) as info:
        read_weights(path)
    message = str(info.value)
    assert str(path) in message and expected in message
    assert "\n" not in message


def test_unrecognised_content_lists_supported_formats(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(WeightsError, match="supported formats: safetensors, yolokit .pt, Ultralytics .pt"):
        detect_format(path)


def test_missing_file_is_weights_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        read_weights(tmp_path / "nope.safetensors")


def test_corrupt_metadata_value_is_named(tmp_path: Path) -> None:
    _, data, n, header = _valid_file(tmp_path)
    header["__metadata__"]["names"] = "{not json"
    path = tmp_path / "badmeta.safetensors"
    path.write_bytes(_with_header(data, n, header))
    with pytest.raises(WeightsError, match=r"badmeta\.safetensors: metadata key 'names' is not valid JSON"):
        read_weights(path)


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    _, data, n, header = _valid_file(tmp_path)
    header["__metadata__"]["format_version"] = "2"
    path = tmp_path / "future.safetensors"
    path.write_bytes(_with_header(data, n, header))
    with pytest.raises(WeightsError, match="needs weights format 2, this yolokit reads format <= 1; upgrade"):
        read_weights(path)


def test_check_fit_names_keys_shapes_and_counts() -> None:
    expected = {f"k{i}": torch.zeros(2, 3) for i in range(8)} | {"only_model": torch.zeros(1)}
    found = {f"k{i}": torch.zeros(3, 3) for i in range(7)} | {"k7": torch.zeros(2, 3), "extra": torch.zeros(1)}
    with pytest.raises(WeightsError) as info:
        native.check_fit("f.safetensors", expected, found)
    message = str(info.value)
    assert message.startswith("f.safetensors: tensors do not fit the model: 7 with a different shape")
    assert "k0 expected (2, 3) found (3, 3)" in message and "k4 expected" in message and "k5 expected" not in message
    assert "1 missing (first: only_model)" in message and "1 unexpected (first: extra)" in message
    native.check_fit("f", {"a": torch.zeros(2)}, {"a": torch.ones(2), "b": torch.ones(1)}, strict=False)


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net, state = _tiny_state()
    path = native.write_native_pt(tmp_path / "w.pt", state, build_metadata(net))
    before = path.read_bytes()

    def failing_save(obj: object, handle) -> None:  # noqa: ANN001
        handle.write(b"partial bytes")
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(RuntimeError, match="disk full"):
        native.write_native_pt(path, state, build_metadata(net))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.pt"]


def test_non_tensor_state_dict_entry_is_refused(tmp_path: Path) -> None:
    net, _ = _tiny_state()
    with pytest.raises(WeightsError, match="state_dict entry 'x' must be a tensor, found str"):
        native.write_safetensors(tmp_path / "w.safetensors", {"x": "nope"}, build_metadata(net))
    assert not (tmp_path / "w.safetensors").exists()
