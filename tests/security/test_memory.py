"""Class 2: memory is bounded by what the file really holds, and a refusal comes before the allocation.

Every case runs in a child whose address space is capped at what it maps after importing torch + 400 MB
(``security_helpers.run_cases``): a reader that allocated first and checked later would die with MemoryError (or be
killed), not raise a one-line ``YolokitError``. The stated bound (docs/weights.md, "Hostile files") is also checked
the other way: a real checkpoint loads with 4x its size + 64 MB of headroom.
"""

import struct
import zipfile

import pytest
from hostile_files import (
    billion_laughs,
    copy_bomb_checkpoint,
    dag_checkpoint,
    reference_checkpoint,
    set_declared_size,
    sparse_safetensors,
    zero_stride_checkpoint,
)
from security_helpers import ROOT, assert_refused, png_header, run_cases, run_limited

FIXTURE = ROOT / "tests" / "fixtures" / "yolo26-tiny-shapes.pt"
READ = "from yolokit.weights.read import read_weights\nresult = read_weights({!r})"


def _stored_storage_bomb(tmp_path):
    path = reference_checkpoint(tmp_path / "declared.pt")
    with zipfile.ZipFile(path) as archive:
        entry = next(n for n in archive.namelist() if "/data/" in n)
    set_declared_size(path, entry, 3 * 2**30)
    return path


def _root_pickle_bomb(tmp_path):
    """A zip whose root-level data.pkl declares 3 GB in a few bytes (no folder: not a torch archive layout)."""
    path = tmp_path / "root.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data.pkl", b"\x80\x02}q\x00.")
    set_declared_size(path, "data.pkl", 3 * 2**30)
    return path


@pytest.mark.slow
def test_hostile_weights_are_refused_before_allocating(tmp_path):
    files = {
        "nc without names": reference_checkpoint(tmp_path / "nc.pt", names=None, nc=10**12),
        "record DAG 2^40": dag_checkpoint(tmp_path / "dag.pt", 40),
        "zero-stride view": zero_stride_checkpoint(tmp_path / "stride.pt"),
        "storage declares 3 GB": _stored_storage_bomb(tmp_path),
        "root data.pkl declares 3 GB": _root_pickle_bomb(tmp_path),
        "set() copies one list 1000x": copy_bomb_checkpoint(tmp_path / "copies.pt"),
        "sparse 8 GB safetensors": sparse_safetensors(tmp_path / "sparse.safetensors"),
    }
    outcomes = run_cases({name: READ.format(str(path)) for name, path in files.items()})
    expected = {"nc without names": "nc=1000000000000", "record DAG 2^40": "paths",
                "zero-stride view": "stride", "storage declares 3 GB": "declares 3221225472 bytes",
                "root data.pkl declares 3 GB": "", "set() copies one list 1000x": "copies more data",
                "sparse 8 GB safetensors": "may allocate"}  # fmt: skip
    for name, outcome in outcomes.items():
        assert_refused(outcome, error="WeightsError", contains=expected[name])


@pytest.mark.slow
def test_hostile_specs_images_yaml_and_labels_are_refused_before_allocating(tmp_path):
    big = tmp_path / "bomb.png"
    big.write_bytes(png_header(30000, 30000))
    (tmp_path / "data.yaml").write_text("train: images\nnames: [a]\n" + billion_laughs())
    (tmp_path / "spec.yaml").write_text("nc: 1\nbackbone: []\nhead: []\n" + billion_laughs())
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    ok = tmp_path / "images" / "a.png"
    ok.write_bytes(png_header(32, 32))
    with open(tmp_path / "labels" / "a.txt", "wb") as handle:  # a 4 GB label file the disk holds sparsely
        handle.truncate(4 * 2**30)
    (tmp_path / "images" / "b.png").write_bytes(png_header(30000, 30000))
    spec = "{'nc': 1, 'backbone': [[-1, %s, 'Conv', [%s, 3, 2]], [-1, 1, 'nn.Upsample', [None, %s, 'nearest']]], " \
           "'head': [[-1, 1, 'Detect', [1]]]}"
    cases = {
        "decode 30000x30000": f"from yolokit.data.image import read_image\nresult = read_image({str(big)!r})",
        "data YAML alias bomb": f"from yolokit.data.dataset import load_data_config\n"
                                f"result = load_data_config({str(tmp_path / 'data.yaml')!r})",
        "spec YAML alias bomb": f"from yolokit.models.spec import load_spec\n"
                                f"result = load_spec({str(tmp_path / 'spec.yaml')!r})",
        "width 10^6": f"from yolokit.models import build_model\nresult = build_model({spec % (1, 10**6, 2)})",
        "repeats 10^6": f"from yolokit.models import build_model\nresult = build_model({spec % (10**6, 16, 2)})",
        "upsample 10^4": f"from yolokit.models import build_model\nresult = build_model({spec % (1, 16, 10**4)})",
        "label scan": "from yolokit.data.labels import scan_labels\n"
                      f"labels, report = scan_labels([{str(ok)!r}, {str(tmp_path / 'images' / 'b.png')!r}], 1, "
                      "progress=False)\nresult = (len(labels), report.corrupt, report.messages)",
    }
    wide = reference_checkpoint(tmp_path / "wide.pt", yaml={
        "nc": 2, "scales": {"n": [1.0, 1000.0, 10**9]}, "scale": "n",
        "backbone": [[-1, 1, "Conv", [4, 1, 1]], [-1, 1, "Conv", [2, 1, 1]]], "head": [[-1, 1, "Detect", [2]]]})
    cases["checkpoint spec width 1000"] = f"from yolokit import YOLO\nresult = YOLO({str(wide)!r})"
    outcomes = run_cases(cases)
    assert_refused(outcomes["checkpoint spec width 1000"], error="SpecError", contains="width 1000")
    assert_refused(outcomes["decode 30000x30000"], error="SourceError", contains="900000000 pixels")
    assert_refused(outcomes["data YAML alias bomb"], error="DatasetError", contains="billion laughs")
    assert_refused(outcomes["spec YAML alias bomb"], error="SpecError", contains="billion laughs")
    assert_refused(outcomes["width 10^6"], error="SpecError", contains="output channels")
    assert_refused(outcomes["repeats 10^6"], error="SpecError", contains="repeats")
    assert_refused(outcomes["upsample 10^4"], error="SpecError", contains="scale factor")
    scan = outcomes["label scan"]
    assert scan.kind == "ok" and scan.result.startswith("(0, 2, "), scan  # both skipped, nothing read
    assert "label file" in scan.result and "pixels" in scan.result, scan


@pytest.mark.slow
def test_real_checkpoint_loads_within_the_stated_bound():
    """The bound of docs/weights.md: peak <= 4 x the file's bytes + 64 MB (here measured as headroom)."""
    headroom = (4 * FIXTURE.stat().st_size) // 2**20 + 64
    outcome = run_limited(READ.format(str(FIXTURE)) + "\nresult = len(result.state_dict)", headroom_mb=headroom)
    assert outcome.kind == "ok" and int(outcome.result) > 100, outcome


def test_png_header_helper_declares_its_size(tmp_path):
    data = png_header(30000, 20000)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (30000, 20000)
