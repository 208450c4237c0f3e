"""Class 5: what yolokit reads back it validates (label caches, weights values, settings)."""

import logging

import numpy as np
import pytest
from security_helpers import png_header

from yolokit.data.labels import scan_labels


def _dataset(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    images = []
    for i in range(3):
        image = tmp_path / "images" / f"{i}.png"
        image.write_bytes(png_header(40, 30))
        (tmp_path / "labels" / f"{i}.txt").write_text("1 0.5 0.5 0.2 0.2\n")
        images.append(image)
    return images


def _tamper(cache, key, change):
    with np.load(cache, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays[key] = change(arrays[key])
    with open(cache, "wb") as handle:
        np.savez(handle, **arrays)


@pytest.mark.parametrize(("key", "change", "reason"), [
    ("cls", lambda a: np.full_like(a, 99), "outside [0, 2)"),
    ("cls", lambda a: np.full_like(a, -1), "outside [0, 2)"),
    ("bboxes", lambda a: np.full_like(a, np.nan), "not finite"),
    ("bboxes", lambda a: a * 5, "not finite"),
    ("shapes", lambda a: a * 0, "shapes below"),
])  # fmt: skip
def test_tampered_label_cache_with_matching_hash_is_rescanned(tmp_path, caplog, key, change, reason):
    images = _dataset(tmp_path)
    cache = tmp_path / "labels" / "train.yolokit.cache"
    first, _ = scan_labels(images, nc=2, cache_path=cache, progress=False)
    assert scan_labels(images, nc=2, cache_path=cache, progress=False)[1].from_cache
    _tamper(cache, key, change)
    with caplog.at_level(logging.WARNING, logger="yolokit.data.labels"):
        labels, report = scan_labels(images, nc=2, cache_path=cache, progress=False)
    assert not report.from_cache  # rescanned, with the true labels
    assert [lab.cls.tolist() for lab in labels] == [[1]] * 3 and labels[0].shape == (30, 40)
    assert any("Ignoring unreadable label cache" in r.getMessage() and reason in r.getMessage()
               for r in caplog.records)  # fmt: skip


def test_cache_member_declaring_more_than_it_holds_is_ignored(tmp_path, caplog):

    images = _dataset(tmp_path)
    cache = tmp_path / "labels" / "train.yolokit.cache"
    scan_labels(images, nc=2, cache_path=cache, progress=False)
    data = bytearray(cache.read_bytes())
    header = data.find(b"'shape': (3,)")  # the counts array: declare 10^11 elements
    assert header > 0
    data[header:header + len(b"'shape': (3,)")] = b"'shape': (99999999999,)"[:13]
    cache.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="yolokit.data.labels"):
        _, report = scan_labels(images, nc=2, cache_path=cache, progress=False)
    assert not report.from_cache and any("Ignoring" in r.getMessage() for r in caplog.records)


def test_cache_name_is_yolokit_own_and_reference_cache_is_left_alone(tmp_path):
    from yolokit.data.dataset import DetectionDataset, load_data_config

    _dataset(tmp_path)
    reference_cache = tmp_path / "labels.cache"  # where the reference keeps its cache for images/ -> labels/
    reference_cache.write_bytes(b"reference pickle cache")
    (tmp_path / "d.yaml").write_text("train: images\nnames: [a, b]\n")
    DetectionDataset(load_data_config(tmp_path / "d.yaml"), "train", progress=False)
    assert (tmp_path / "labels.yolokit.cache").is_file()
    assert reference_cache.read_bytes() == b"reference pickle cache"
    assert DetectionDataset(load_data_config(tmp_path / "d.yaml"), "train", progress=False).report.from_cache


@pytest.mark.parametrize("argv", [
    ["predict", "classes=-1"], ["predict", "max_det=-1"], ["info", "imgsz=-1"], ["predict", "line_width=-3"],
    ["val", "max_det=0"], ["predict", "classes=[0,-2]"],
])  # fmt: skip
def test_bad_settings_are_refused_in_one_line_before_loading(argv, capsys):
    from yolokit.cli import main

    code = main([argv[0], "model=does-not-exist.pt", "source=nothing.jpg", argv[1]] if argv[0] == "predict"
                else [argv[0], "model=does-not-exist.pt", argv[1]])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and argv[1].split("=")[0] in err[0], err
