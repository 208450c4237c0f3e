"""Synthetic shapes dataset: determinism, exact boxes, layout, and that it loads with zero bad rows."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from yolokit.data import synth
from yolokit.data.dataset import DetectionDataset, load_data_config
from yolokit.data.synth import SHAPES, clip_polygon, draw_shape, make_synthetic_dataset, shape_polygon
from yolokit.errors import ConfigError, DatasetError


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every image and label file under root, by relative path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in ("images", "labels") for p in sorted((root / folder).rglob("*")) if p.is_file()}


def read_labels(path: Path) -> np.ndarray:
    return np.loadtxt(path, ndmin=2).reshape(-1, 5)


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    kwargs = {"n_train": 6, "n_val": 4, "imgsz": 96}
    a = tree_hashes(make_synthetic_dataset(tmp_path / "a", seed=3, **kwargs).parent)
    b = tree_hashes(make_synthetic_dataset(tmp_path / "b", seed=3, workers=1, **kwargs).parent)
    c = tree_hashes(make_synthetic_dataset(tmp_path / "c", seed=4, **kwargs).parent)
    assert len(a) == 20 and a == b
    assert a.keys() == c.keys() and sum(a[k] != c[k] for k in a) >= 10


def test_background_choice_is_recorded_and_changes_images(tmp_path):
    kwargs = {"n_train": 4, "n_val": 0, "imgsz": 64, "seed": 7}
    noise = make_synthetic_dataset(tmp_path / "n", backgrounds=["noise"], **kwargs).parent
    default = make_synthetic_dataset(tmp_path / "d", **kwargs).parent
    assert yaml.safe_load((noise / "data.yaml").read_text())["synth"]["backgrounds"] == ["noise"]
    a, b = tree_hashes(noise), tree_hashes(default)
    assert any(a[k] != b[k] for k in a if k.startswith("images"))


def test_layout_yaml_and_loading_with_zero_bad_rows(tmp_path):
    data_yaml = make_synthetic_dataset(tmp_path / "ds", n_train=24, n_val=8, imgsz=128, seed=1)
    assert data_yaml == tmp_path / "ds" / "data.yaml"
    raw = yaml.safe_load(data_yaml.read_text())
    assert raw["path"] == str(tmp_path / "ds") and (raw["train"], raw["val"]) == ("images/train", "images/val")
    assert raw["names"] == {0: "rectangle", 1: "ellipse", 2: "triangle"}
    data = load_data_config(data_yaml)
    for split, count in (("train", 24), ("val", 8)):
        dataset = DetectionDataset(data, split, cache=False, progress=False)
        report = dataset.report
        assert len(dataset) == count and (report.bad_rows, report.duplicates, report.corrupt) == (0, 0, 0)
        assert report.background >= 1 and report.found >= count // 2  # background images present
        cls = np.concatenate([x.cls for x in dataset.labels])
        assert set(cls.tolist()) <= {0, 1, 2} and len(set(cls.tolist())) == 3
        image, labels = dataset[0]
        assert image.shape == (128, 128, 3) and labels.shape == (128, 128)


def test_labels_are_tight_pixel_boxes_of_drawn_shapes():
    rng = np.random.default_rng(0)
    drawn = 0
    for k in range(200):
        canvas = np.zeros((90, 110, 3), np.uint8)
        polygon = shape_polygon(SHAPES[k % len(SHAPES)], (rng.uniform(-10, 120), rng.uniform(-10, 100)),
                                (rng.uniform(3, 70), rng.uniform(3, 70)), rng.uniform(-90, 90), rng.uniform(-1, 1))
        box = draw_shape(canvas, polygon, (255, 255, 255))
        ys, xs = np.nonzero(canvas[..., 0])
        if box is None:  # nothing (or less than 2x2 px) inside the image: nothing drawn, no label
            assert len(xs) == 0
            continue
        np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        # and within 1 px of the continuous polygon clipped to the image's pixel centres
        clipped = clip_polygon(polygon - 0.5, 109, 89) + 0.5
        np.testing.assert_allclose(box, [*clipped.min(0), *clipped.max(0)], atol=1.0)
        drawn += 1
    assert drawn > 150


def test_known_rectangle_box():
    canvas = np.zeros((50, 60, 3), np.uint8)
    # edges x 15.2..25.2, y 12.2..18.2 -> pixel-centre coordinates 14.7..24.7, 11.7..17.7 -> rounded vertices
    box = draw_shape(canvas, shape_polygon("rectangle", (20.2, 15.2), (10, 6)), (0, 0, 255))
    np.testing.assert_array_equal(box, [15, 12, 26, 19])  # pixels 15..25 x 12..18
    assert canvas[12:19, 15:26, 2].min() == 255 and canvas[..., 2].sum() == 255 * 11 * 7
    rotated = shape_polygon("rectangle", (0, 0), (2, 2), angle=45)
    np.testing.assert_allclose(np.abs(rotated).max(0), [np.sqrt(2), np.sqrt(2)])


def test_clip_polygon_hand_cases():
    square = np.array([[-1, -1], [2, -1], [2, 2], [-1, 2]], float)
    np.testing.assert_allclose(sorted(map(tuple, clip_polygon(square, 1, 1))), [(0, 0), (0, 1), (1, 0), (1, 1)])
    triangle = np.array([[0, 0], [4, 0], [0, 4]], float)
    clipped = clip_polygon(triangle, 2, 10)  # cut at x = 2: (0,0) (2,0) (2,2) (0,4)
    np.testing.assert_allclose(sorted(map(tuple, clipped)), [(0, 0), (0, 4), (2, 0), (2, 2)])
    assert clip_polygon(triangle + 20, 5, 5).shape == (0, 2)


def test_label_rows_match_render_boxes(tmp_path):
    make_synthetic_dataset(tmp_path, n_train=5, n_val=0, imgsz=64, seed=2, classes=("star", "cross"),
                           background_fraction=0)
    tile = np.random.default_rng([2, 0]).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    for index in range(5):
        rng = np.random.default_rng([2, 2, 0, index])
        n_objects = int(rng.integers(1, 7))
        _, cls, boxes = synth.render_image(rng, 64, 2, ("star", "cross"), n_objects, tile)
        rows = read_labels(tmp_path / "labels" / "train" / f"{index:05d}.txt")
        assert rows[:, 0].tolist() == cls.tolist() and len(rows) >= 1
        xyxy = np.concatenate([rows[:, 1:3] - rows[:, 3:] / 2, rows[:, 1:3] + rows[:, 3:] / 2], 1) * 64
        np.testing.assert_allclose(xyxy, boxes, atol=1e-3)
        assert xyxy.min() >= -1e-3 and xyxy.max() <= 64 + 1e-3  # clipped to the image (6-decimal rows)


def test_reuse_regenerate_and_refuse_foreign_folder(tmp_path):
    out = tmp_path / "ds"
    make_synthetic_dataset(out, n_train=6, n_val=2, imgsz=64)
    first = (out / "images" / "train" / "00000.jpg").stat().st_mtime_ns
    make_synthetic_dataset(out, n_train=6, n_val=2, imgsz=64)  # same settings: reused
    assert (out / "images" / "train" / "00000.jpg").stat().st_mtime_ns == first
    make_synthetic_dataset(out, n_train=3, n_val=2, imgsz=64)  # fewer images: stale ones removed
    assert sorted(p.name for p in (out / "images" / "train").iterdir()) == ["00000.jpg", "00001.jpg", "00002.jpg"]
    assert len(list((out / "labels" / "train").iterdir())) == 3
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="is not empty and is not a yolokit synthetic dataset"):
        make_synthetic_dataset(foreign, n_train=2, n_val=0)
    assert (foreign / "precious.txt").read_text() == "keep me"


def test_data_yaml_written_last(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(synth, "_write_split", crash)
    with pytest.raises(RuntimeError):
        make_synthetic_dataset(tmp_path / "half", n_train=2, n_val=1)
    assert not (tmp_path / "half" / "data.yaml").exists()
    monkeypatch.undo()
    assert make_synthetic_dataset(tmp_path / "half", n_train=2, n_val=1, imgsz=64).is_file()  # can resume


@pytest.mark.parametrize("kwargs", [{"classes": ("rectangle", "hexagon")}, {"classes": ()}, {"n_train": -1},
                                    {"imgsz": 8}, {"n_train": 0, "n_val": 0}, {"max_objects": 0},
                                    {"backgrounds": ("plaid",)}, {"backgrounds": ()},
                                    {"jpeg_quality": 0}])
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ConfigError):
        make_synthetic_dataset(tmp_path, **kwargs)
