"""Classification datasets: class folders and YAMLs, bad images, transforms, determinism, the synthetic set."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from yolokit.data.classify import ClassifyDataset, collate_classify, load_classify_data, scan_split
from yolokit.data.classify_synth import make_synthetic_classification
from yolokit.data.classify_transforms import (
    ClassifyAugmentConfig,
    ClassifyTrainTransform,
    erase_box,
    eval_crop,
    random_resized_crop_box,
)
from yolokit.errors import ConfigError, DatasetError


def write_image(path: Path, value: int = 128, hw: tuple[int, int] = (24, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((*hw, 3), value, np.uint8))
    return path


def make_folders(root: Path, train: dict[str, int], val: dict[str, int] | None = None) -> Path:
    for split, counts in (("train", train), ("val", val or {})):
        for name, count in counts.items():
            for i in range(count):
                write_image(root / split / name / f"{i}.png", value=40 * i)
    return root


def test_folder_names_are_sorted_and_val_maps_by_name(tmp_path):
    root = make_folders(tmp_path / "d", {"zebra": 2, "ant": 1, "mole": 1}, {"mole": 1, "zebra": 1})
    data = load_classify_data(root)
    assert data.names == {0: "ant", 1: "mole", 2: "zebra"} and data.val_split == "val"
    assert [c for _, c in scan_split(data, "train")] == [0, 1, 2, 2]
    assert scan_split(data, "val") == [(str(root / "val/mole/0.png"), 1), (str(root / "val/zebra/0.png"), 2)]


def test_test_split_validates_when_there_is_no_val(tmp_path):
    root = make_folders(tmp_path / "d", {"a": 1, "b": 1})
    write_image(root / "test" / "b" / "x.jpg")
    data = load_classify_data(root)
    assert data.val_split == "test" and scan_split(data, "test") == [(str(root / "test/b/x.jpg"), 1)]


def test_yaml_gives_paths_and_names(tmp_path):
    make_folders(tmp_path / "imgs", {"cat": 1, "dog": 1}, {"dog": 1})
    (tmp_path / "d.yaml").write_text(yaml.safe_dump({"path": "imgs", "train": "train", "val": "val",
                                                     "names": {0: "dog", 1: "cat"}}))
    data = load_classify_data(tmp_path / "d.yaml")
    assert data.names == {0: "dog", 1: "cat"}  # the YAML's order wins over the sorted folders
    assert [c for _, c in scan_split(data, "train")] == [1, 0]  # cat folder first, class 1
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"path": "imgs", "train": "train", "names": ["dog", "cow"]}))
    with pytest.raises(DatasetError, match=r"'names' \['cow', 'dog'\] differ from the class folders"):
        load_classify_data(tmp_path / "bad.yaml")


def test_layout_errors_are_one_line(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_classify_data(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no train folder"):
        load_classify_data(tmp_path / "empty")
    write_image(tmp_path / "det" / "train" / "0.jpg")  # images without class folders
    with pytest.raises(DatasetError, match="has no class folders.*task=detect"):
        load_classify_data(tmp_path / "det")
    root = make_folders(tmp_path / "d", {"a": 1}, {"a": 1, "b": 1})
    with pytest.raises(DatasetError, match=r"class folders \['b'\] that train/ does not have"):
        load_classify_data(root)


def test_bad_images_are_skipped_with_a_warning_naming_them(tmp_path, caplog):
    root = make_folders(tmp_path / "d", {"a": 2})
    (root / "train" / "a" / "broken.jpg").write_bytes(b"not an image")
    write_image(root / "train" / "a" / "tiny.png", hw=(5, 40))
    with caplog.at_level(logging.WARNING, logger="yolokit.data.classify"):
        samples = scan_split(load_classify_data(root), "train")
    assert [Path(p).name for p, _ in samples] == ["0.png", "1.png"]
    assert "Skipped 2 unreadable image(s)" in caplog.text and "broken.jpg" in caplog.text
    assert "tiny.png (image size 40x5 is below 10 px)" in caplog.text
    for path in (root / "train" / "a").glob("?.png"):
        path.unlink()
    with pytest.raises(DatasetError, match="holds no readable image"):
        scan_split(load_classify_data(root), "train")


def test_eval_crop_geometry():
    image = np.zeros((20, 41, 3), np.uint8)
    image[..., 2] = np.arange(41, dtype=np.uint8)  # red = column index (BGR input)
    out = eval_crop(image, 20)  # short side already 20: no resize; left = round(21 / 2) = 10
    assert out.shape == (20, 20, 3) and out[0, :, 0].tolist() == list(range(10, 30))  # RGB output
    flat = eval_crop(np.full((300, 100, 3), (10, 20, 30), np.uint8), 50)  # resize to (150, 50), crop rows 50..99
    assert flat.shape == (50, 50, 3) and (flat == (30, 20, 10)).all()
    assert eval_crop(np.zeros((30, 40, 3), np.uint8), (16, 24)).shape == (16, 24, 3)


def test_random_resized_crop_and_erasing_boxes_stay_inside():
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = random_resized_crop_box(rng, 60, 90, scale=(0.5, 1.0))
        assert 0 <= top and top + h <= 60 and 0 <= left and left + w <= 90
        assert 0.5 * 5400 * 0.9 <= h * w <= 5400 and 0.7 <= w / h <= 1.4
        box = erase_box(rng, 32, 32)
        assert box is None or (box[0] + box[2] <= 32 and box[1] + box[3] <= 32)
    assert random_resized_crop_box(rng, 10, 100, scale=(1.0, 1.0)) == (0, 43, 10, 13)  # fallback: ratio 4/3, centred


def test_augment_settings_are_checked():
    assert ClassifyAugmentConfig.from_mapping({"erasing": 0.0, "lr0": 1}).erasing == 0.0
    with pytest.raises(ConfigError, match="erasing must be a number in"):
        ClassifyAugmentConfig(erasing=1.5)
    with pytest.raises(ConfigError, match="scale must be below 1"):
        ClassifyAugmentConfig(scale=1.0)


def test_train_transform_without_augmentation_is_a_resize():
    plain = ClassifyTrainTransform(16, {"scale": 0.0, "fliplr": 0.0, "hsv_h": 0, "hsv_s": 0, "hsv_v": 0,
                                        "erasing": 0.0})
    image = np.full((32, 32, 3), (1, 2, 3), np.uint8)
    out = plain(image, np.random.default_rng(0))
    assert out.shape == (16, 16, 3) and (out == (3, 2, 1)).all()


def test_samples_are_a_function_of_seed_epoch_and_index(tmp_path):
    root = make_synthetic_classification(tmp_path / "s", n_train=10, n_val=5, imgsz=48)
    ds = ClassifyDataset(root, "train", imgsz=32, augment=True, seed=1)
    first = ds[3]["img"].clone()
    assert first.shape == (3, 32, 32) and first.dtype == torch.uint8
    assert torch.equal(ClassifyDataset(root, "train", imgsz=32, augment=True, seed=1)[3]["img"], first)
    ds.set_epoch(1)
    assert not torch.equal(ds[3]["img"], first)
    batch = collate_classify([ds[i] for i in range(4)])
    assert batch["img"].shape == (4, 3, 32, 32) and batch["cls"].dtype == torch.int64
    assert batch["cls"].tolist() == [ds.labels[i] for i in range(4)]
    val = ClassifyDataset(root, "val", imgsz=32)
    assert torch.equal(val[0]["img"], val[0]["img"]) and len(val) == 5


def test_fraction_keeps_every_class(tmp_path):
    root = make_folders(tmp_path / "d", {"a": 4, "b": 2})
    ds = ClassifyDataset(root, "train", imgsz=16, fraction=0.5)
    assert ds.labels == [0, 0, 1]
    with pytest.raises(ConfigError, match="fraction"):
        ClassifyDataset(root, "train", fraction=0.0)


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.jpg"))}


def test_synthetic_classification_set(tmp_path):
    root = make_synthetic_classification(tmp_path / "a", n_train=10, n_val=5, imgsz=40, seed=2)
    hashes = tree_hashes(root)
    assert len(hashes) == 15
    assert hashes == tree_hashes(make_synthetic_classification(tmp_path / "b", n_train=10, n_val=5, imgsz=40, seed=2))
    data = load_classify_data(root / "data.yaml")
    assert data.names == load_classify_data(root).names == {0: "cross", 1: "ellipse", 2: "rectangle", 3: "star",
                                                            4: "triangle"}
    assert np.bincount([c for _, c in scan_split(data, "train")]).tolist() == [2, 2, 2, 2, 2]  # balanced
    assert make_synthetic_classification(root, n_train=10, n_val=5, imgsz=40, seed=2) == root  # reused
    (tmp_path / "other" / "x").mkdir(parents=True)
    with pytest.raises(DatasetError, match="not a yolokit synthetic classification dataset"):
        make_synthetic_classification(tmp_path / "other")
    with pytest.raises(ConfigError, match="distinct names"):
        make_synthetic_classification(tmp_path / "c", classes=["circle"])
