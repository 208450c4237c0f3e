"""Dataset YAML resolution and DetectionDataset on small datasets built in tmp_path."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from yolokit.data.dataset import DetectionDataset, default_cache_path, load_data_config
from yolokit.data.labels import label_path_for
from yolokit.errors import DatasetError


def write_image(path: Path, h: int = 32, w: int = 48, value: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((h, w, 3), value, np.uint8))
    return path


def make_dataset(root: Path, n_train: int = 3, n_val: int = 2) -> None:
    for split, count in (("train", n_train), ("val", n_val)):
        for i in range(count):
            image = write_image(root / "images" / split / f"{i}.png", h=32 + i)
            label = label_path_for(image)
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(f"{i % 2} 0.5 0.5 0.25 0.5\n")


def write_yaml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_folders_names_list_and_relative_root(tmp_path):
    make_dataset(tmp_path / "datasets" / "toy")
    yaml_path = write_yaml(tmp_path / "cfg" / "toy.yaml",
                           "path: ../datasets/toy\ntrain: images/train\nval: images/val\nnames: [cat, dog]\n")
    data = load_data_config(yaml_path)
    root = (tmp_path / "datasets" / "toy").resolve()
    assert data.root == root and data.yaml_path == yaml_path
    assert data.names == {0: "cat", 1: "dog"} and data.nc == 2
    assert data.splits["train"] == [root / "images" / "train" / f"{i}.png" for i in range(3)]
    assert data.splits["val"] == [root / "images" / "val" / f"{i}.png" for i in range(2)]
    assert "test" not in data.splits and data.coco_json == {}


def test_txt_lists_recursive_folders_and_lists_of_sources(tmp_path):
    make_dataset(tmp_path)
    write_image(tmp_path / "images" / "extra" / "deep" / "z.jpg")
    (tmp_path / "train.txt").write_text("./images/train/1.png\nimages/train/0.png\n\n# comment\n")
    yaml_path = write_yaml(tmp_path / "data.yaml", "path: .\ntrain: train.txt\nval: [images/val, images/extra]\n"
                                                   "test: images/extra\nnames: {0: a, 1: b}\nnc: 2\n")
    data = load_data_config(yaml_path)
    assert data.splits["train"] == [tmp_path / "images" / "train" / "0.png", tmp_path / "images" / "train" / "1.png"]
    assert [p.name for p in data.splits["val"]] == ["z.jpg", "0.png", "1.png"]
    assert data.splits["test"] == [tmp_path / "images" / "extra" / "deep" / "z.jpg"]
    assert default_cache_path(data, "train") == tmp_path / "train.yolokit.cache"
    assert default_cache_path(data, "test") == tmp_path / "labels" / "extra" / "deep.yolokit.cache"


@pytest.mark.parametrize(("text", "message"), [
    ("train: images/train\nval: images/val\n", "missing 'names'"),
    ("train: images/train\nnames: [a, b]\nnc: 3\n", "nc=3 but 'names' lists 2 classes"),
    ("train: images/train\nnames: {0: a, 2: b}\n", "'names' keys must be 0..1, found [0, 2]"),
    ("names: [a]\n", "no split given"),
    ("- just\n- a list\n", "expected a mapping"),
    ("train: images/train\nval: images/nope\nnames: [a]\n", "'val' path not found: {root}/images/nope"),
    ("path: missing_root\ntrain: x\nnames: [a]\n", "'path' path not found: {root}/missing_root"),
    ("train: images/nope\nnames: [a]\ndownload: https://example.com/x.zip\n", "yolokit never downloads"),
])
def test_config_errors_are_one_line_and_name_the_file(tmp_path, text, message):
    make_dataset(tmp_path)
    yaml_path = write_yaml(tmp_path / "bad.yaml", text)
    with pytest.raises(DatasetError) as info:
        load_data_config(yaml_path)
    text = str(info.value)
    assert "\n" not in text and text.startswith(str(yaml_path))
    assert message.format(root=tmp_path) in text


def test_missing_file_and_yaml_syntax_error(tmp_path):
    with pytest.raises(DatasetError, match="dataset file not found: .*nothere.yaml"):
        load_data_config(tmp_path / "nothere.yaml")
    bad = write_yaml(tmp_path / "syntax.yaml", "train: images\nnames: [a, b\nval: x\n")
    with pytest.raises(DatasetError) as info:
        load_data_config(bad)
    assert str(info.value).startswith(f"{bad}:") and "YAML syntax error" in str(info.value)
    assert "\n" not in str(info.value)


def test_detection_dataset_items(tmp_path):
    make_dataset(tmp_path)
    yaml_path = write_yaml(tmp_path / "d.yaml", "train: images/train\nval: images/val\nnames: [a, b]\n")
    dataset = DetectionDataset(load_data_config(yaml_path), "train", progress=False)
    assert len(dataset) == 3 and dataset.names == {0: "a", 1: "b"} and dataset.nc == 2
    image, labels = dataset[2]
    assert image.shape == (34, 48, 3) and image.dtype == np.uint8 and labels.shape == (34, 48)
    assert labels.cls.tolist() == [0]
    np.testing.assert_allclose(labels.bboxes, [[0.5, 0.5, 0.25, 0.5]])
    assert (tmp_path / "labels" / "train.yolokit.cache").is_file()
    assert DetectionDataset(load_data_config(yaml_path), "train", progress=False).report.from_cache


def test_detection_dataset_without_cache_writes_none(tmp_path):
    make_dataset(tmp_path)
    yaml_path = write_yaml(tmp_path / "d.yaml", "val: images/val\nnames: [a, b]\n")
    dataset = DetectionDataset(load_data_config(yaml_path), "val", cache=False, progress=False)
    assert len(dataset) == 2 and not (tmp_path / "labels" / "val.yolokit.cache").exists()


def test_detection_dataset_errors(tmp_path):
    make_dataset(tmp_path)
    (tmp_path / "empty").mkdir()
    for name in ("x.jpg", "y.png"):
        (tmp_path / "images" / "broken" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "images" / "broken" / name).write_bytes(b"\x00" * 10)
    yaml_path = write_yaml(tmp_path / "d.yaml", "train: images/train\nval: empty\ntest: images/broken\nnames: [a, b]\n")
    data = load_data_config(yaml_path)
    with pytest.raises(DatasetError, match=r"split 'nope' is not in .*d.yaml; it has \['test', 'train', 'val'\]"):
        DetectionDataset(data, "nope")
    with pytest.raises(DatasetError, match=f"no images found in {tmp_path / 'empty'}"):
        DetectionDataset(data, "val")
    with pytest.raises(DatasetError, match="all 2 images of split 'test' .* were unreadable"):
        DetectionDataset(data, "test", progress=False)
