"""Label files: row checks with file:line messages, background images, image shapes, and the scan cache."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolokit.data import labels as labels_module
from yolokit.data.labels import label_path_for, parse_label_file, read_image_shape, scan_labels


def write_image(path: Path, h: int = 40, w: int = 60) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.zeros((h, w, 3), np.uint8)
    image[: h // 2] = (10, 200, 30)
    assert cv2.imwrite(str(path), image)
    return path


def write_label(image_path: Path, text: str) -> Path:
    path = label_path_for(image_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_label_path_replaces_last_images_folder(tmp_path):
    image = tmp_path / "images" / "set" / "images" / "train" / "a.b.jpg"
    assert label_path_for(image) == tmp_path / "images" / "set" / "labels" / "train" / "a.b.txt"
    assert label_path_for(tmp_path / "flat" / "x.png") == tmp_path / "flat" / "x.txt"


def test_parse_good_rows_and_tolerance_clip(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("0 0.5 0.5 0.2 0.4\n\n2 0.1 0.9 0.2 0.2\n1 0.004 0.5 0.0 0.1\n1.0 0.998 0.5 0.01 0.1\n")
    parsed = parse_label_file(path, nc=3)
    # row 4 has zero width -> bad; row 5: x2 = 1.003 within tolerance -> clipped to [0.993, 1.0]
    assert parsed.cls.tolist() == [0, 2, 1]
    assert parsed.cls.dtype == np.int64 and parsed.bboxes.dtype == np.float32
    np.testing.assert_allclose(parsed.bboxes[0], [0.5, 0.5, 0.2, 0.4], atol=1e-7)
    np.testing.assert_allclose(parsed.bboxes[1], [0.1, 0.9, 0.2, 0.2], atol=1e-7)
    np.testing.assert_allclose(parsed.bboxes[2], [(0.993 + 1.0) / 2, 0.5, 0.007, 0.1], atol=1e-6)
    assert parsed.bad_rows == 1
    assert parsed.messages == [f"{path}:4: zero or negative width/height (w=0, h=0.1)"]


@pytest.mark.parametrize(("row", "reason"), [
    ("0 0.5 0.5 0.2", "expected 5 columns 'class cx cy w h', found 4"),
    ("0 0.5 0.5 0.2 0.2 0.9", "expected 5 columns 'class cx cy w h', found 6"),
    ("0 0.5 abc 0.2 0.2", "non-numeric value 'abc'"),
    ("0 0.5 nan 0.2 0.2", "non-finite value (nan or inf)"),
    ("3 0.5 0.5 0.2 0.2", "class id 3 out of range [0, 3)"),
    ("-1 0.5 0.5 0.2 0.2", "class id -1 out of range [0, 3)"),
    ("1.5 0.5 0.5 0.2 0.2", "class id 1.5 is not an integer"),
    ("0 0.5 0.5 -0.2 0.2", "zero or negative width/height (w=-0.2, h=0.2)"),
    ("0 0.95 0.5 0.2 0.2", "coordinates out of [0, 1] (box spans 0.4..1.05, tolerance 0.01)"),
    ("0 1.5 0.5 0.2 0.2", "coordinates out of [0, 1] (box spans 0.4..1.6, tolerance 0.01)"),
])
def test_each_bad_row_is_reported_and_skipped(tmp_path, row, reason):
    path = tmp_path / "x.txt"
    path.write_text(f"1 0.5 0.5 0.5 0.5\n{row}\n2 0.25 0.25 0.1 0.1\n")
    parsed = parse_label_file(path, nc=3)
    assert parsed.cls.tolist() == [1, 2]  # the rest of the file is kept
    assert parsed.bad_rows == 1
    assert parsed.messages == [f"{path}:2: {reason}"]


def test_duplicates_keep_one_and_report(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n0 0.50 0.5 0.2 0.2000\n")
    parsed = parse_label_file(path, nc=2)
    assert parsed.cls.tolist() == [0, 1]
    assert (parsed.duplicates, parsed.bad_rows) == (1, 0)
    assert parsed.messages == [f"{path}:3: duplicate of line 1 (one copy kept)"]


def test_bom_and_crlf_are_accepted(tmp_path):
    path = tmp_path / "w.txt"
    path.write_bytes("\ufeff1 0.5 0.5 0.2 0.2\r\n0 0.25 0.25 0.1 0.1\r\n".encode())
    parsed = parse_label_file(path, nc=2)
    assert parsed.cls.tolist() == [1, 0] and parsed.bad_rows == 0


def test_polygon_rows_become_tight_boxes(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("1 0.1 0.2 0.5 0.2 0.3 0.6\n")
    parsed = parse_label_file(path, nc=2)
    np.testing.assert_allclose(parsed.bboxes, [[0.3, 0.4, 0.4, 0.4]], atol=1e-7)


def _small_dataset(tmp_path: Path) -> list[Path]:
    images = [write_image(tmp_path / "images" / "train" / f"{i}.jpg", h=40 + i, w=60) for i in range(5)]
    write_label(images[0], "0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n")
    write_label(images[1], "")  # empty -> background
    write_label(images[2], "0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n")  # one bad row
    # images[3]: no label file -> background
    images[4].write_bytes(b"not an image")  # corrupt -> skipped
    return images


def test_scan_counts_background_and_corrupt(tmp_path):
    images = _small_dataset(tmp_path)
    labels, report = scan_labels(images, nc=2, progress=False)
    assert [Path(item.im_file).name for item in labels] == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    assert [len(item) for item in labels] == [2, 0, 1, 0]
    assert [item.shape for item in labels] == [(40, 60), (41, 60), (42, 60), (43, 60)]
    assert (report.images, report.found, report.empty, report.missing, report.corrupt) == (5, 2, 1, 1, 1)
    assert (report.bad_rows, report.instances, report.background) == (1, 3, 2)
    assert f"{label_path_for(images[2])}:2: class id 7 out of range [0, 2)" in report.messages
    assert any(m.startswith(f"{images[4]}: unreadable image, skipped") for m in report.messages)


def test_scan_logs_summary_and_at_most_n_messages(tmp_path, caplog):
    image = write_image(tmp_path / "images" / "a.jpg")
    write_label(image, "".join(f"9 0.5 0.5 0.{i + 1} 0.1\n" for i in range(15)))
    with caplog.at_level(logging.WARNING, logger="yolokit.data.labels"):
        scan_labels([image], nc=2, progress=False)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("labels: 1 images, 0 labelled, 1 background") and "15 bad rows" in lines[0]
    assert len(lines) == 1 + labels_module.MAX_LOGGED_MESSAGES + 1
    assert lines[-1] == "... and 5 more problems (see ScanReport.messages)"


def test_cache_is_used_when_nothing_changed(tmp_path, monkeypatch):
    images = _small_dataset(tmp_path)
    cache = tmp_path / "labels" / "train.cache"
    first, first_report = scan_labels(images, nc=2, cache_path=cache, progress=False)
    assert cache.is_file()

    def fail(*args, **kwargs):
        raise AssertionError("label files were read although the cache is valid")

    monkeypatch.setattr(labels_module, "parse_label_file", fail)
    monkeypatch.setattr(labels_module, "read_image_shape", fail)
    second, second_report = scan_labels(images, nc=2, cache_path=cache, progress=False)
    assert second_report.from_cache and not first_report.from_cache
    assert [(x.im_file, x.shape, x.cls.tolist(), x.bboxes.tolist()) for x in second] == \
        [(x.im_file, x.shape, x.cls.tolist(), x.bboxes.tolist()) for x in first]
    assert second[0].cls.dtype == np.int64 and second[0].bboxes.dtype == np.float32
    assert second_report.messages == first_report.messages and second_report.bad_rows == 1


def test_cache_invalidated_by_label_edit_and_new_image(tmp_path, monkeypatch):
    images = _small_dataset(tmp_path)[:4]
    cache = tmp_path / "labels" / "train.cache"
    scan_labels(images, nc=2, cache_path=cache, progress=False)
    calls = []
    original = labels_module.parse_label_file
    monkeypatch.setattr(labels_module, "parse_label_file", lambda *a: calls.append(a) or original(*a))

    label = label_path_for(images[1])
    label.write_text("1 0.5 0.5 0.5 0.5\n")
    os.utime(label, ns=(1, 1))  # make sure the mtime differs even on coarse clocks
    labels, report = scan_labels(images, nc=2, cache_path=cache, progress=False)
    assert not report.from_cache and calls and labels[1].cls.tolist() == [1]

    images.append(write_image(tmp_path / "images" / "train" / "new.jpg"))
    labels, report = scan_labels(images, nc=2, cache_path=cache, progress=False)
    assert not report.from_cache and len(labels) == 5
    assert scan_labels(images, nc=2, cache_path=cache, progress=False)[1].from_cache
    assert not scan_labels(images, nc=3, cache_path=cache, progress=False)[1].from_cache  # nc is part of the key


def test_corrupt_cache_is_ignored(tmp_path):
    images = _small_dataset(tmp_path)
    cache = tmp_path / "train.cache"
    scan_labels(images, nc=2, cache_path=cache, progress=False)
    valid = cache.read_bytes()
    for garbage in (b"garbage", valid[: len(valid) // 2], valid[:-30]):  # not a zip, truncated zips
        cache.write_bytes(garbage)
        labels, report = scan_labels(images, nc=2, cache_path=cache, progress=False)
        assert len(labels) == 4 and not report.from_cache
        assert scan_labels(images, nc=2, cache_path=cache, progress=False)[1].from_cache  # rewritten


def test_inconsistent_cache_is_ignored(tmp_path):
    images = _small_dataset(tmp_path)
    cache = tmp_path / "train.cache"
    scan_labels(images, nc=2, cache_path=cache, progress=False)
    with np.load(cache) as archive:
        arrays = dict(archive)
    arrays["cls"] = arrays["cls"][:-1]
    with open(cache, "wb") as handle:
        np.savez(handle, **arrays)
    assert not scan_labels(images, nc=2, cache_path=cache, progress=False)[1].from_cache


def test_unwritable_cache_only_warns(tmp_path, caplog):
    images = _small_dataset(tmp_path)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, so no folder can be made under it")
    with caplog.at_level(logging.WARNING, logger="yolokit.data.labels"):
        labels, _ = scan_labels(images, nc=2, cache_path=blocker / "train.cache", progress=False)
    assert len(labels) == 4
    assert any(r.getMessage().startswith(f"Cannot write label cache {blocker / 'train.cache'}")
               for r in caplog.records)


def test_cache_written_by_main_rank_only(tmp_path, monkeypatch):
    images = _small_dataset(tmp_path)
    monkeypatch.setenv("RANK", "1")
    scan_labels(images, nc=2, cache_path=tmp_path / "train.cache", progress=False)
    assert not (tmp_path / "train.cache").exists()


def test_image_shape_follows_exif_orientation_like_read_image(tmp_path):
    from PIL import Image

    from yolokit.data.sources import read_image

    for suffix in (".jpg", ".png"):
        path = tmp_path / f"rotated{suffix}"
        image = Image.new("RGB", (50, 20), (200, 10, 10))
        exif = image.getexif()
        exif[0x0112] = 6  # rotate 90 degrees: displayed 20 wide, 50 high
        image.save(path, exif=exif)
        assert read_image_shape(path) == read_image(path).shape[:2] == (50, 20)
    plain = write_image(tmp_path / "plain.jpg", h=33, w=17)
    assert read_image_shape(plain) == (33, 17)
