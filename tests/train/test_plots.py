"""results.csv rows, results.png, label statistics and training-batch mosaics."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from yolokit.data.labels import ImageLabels
from yolokit.errors import ConfigError
from yolokit.predict.draw import colors
from yolokit.train.plots import plot_labels, plot_results, plot_train_batch, read_results, write_results_row

COLUMNS = ["epoch", "time", "train/box_loss", "train/cls_loss", "train/dfl_loss", "metrics/precision(B)",
           "metrics/recall(B)", "metrics/mAP50-95(B)"]


def _row(epoch: int) -> dict:
    return {"epoch": epoch, "time": 10.0 * epoch, "train/box_loss": 2.0 / epoch, "train/cls_loss": 3.0 / epoch,
            "train/dfl_loss": torch.tensor(1.25), "metrics/precision(B)": 0.1 * epoch, "metrics/recall(B)": 0.05,
            "metrics/mAP50-95(B)": 1 / 3}


def test_results_csv_header_then_one_row_per_epoch(tmp_path) -> None:
    path = tmp_path / "results.csv"
    for epoch in (1, 2, 3):
        assert write_results_row(path, _row(epoch)) == path
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS)
    assert lines[1] == "1,10,2,3,1.25,0.1,0.05,0.333333"
    assert len(lines) == 4 and not list(tmp_path.glob(".*tmp"))  # no temporary file left behind
    table = read_results(path)
    assert list(table) == COLUMNS
    assert table["epoch"] == [1, 2, 3] and table["train/box_loss"] == pytest.approx([2.0, 1.0, 2 / 3], rel=1e-5)


def test_resume_appends_under_the_same_header_and_replays_an_epoch_once(tmp_path) -> None:
    path = tmp_path / "results.csv"
    for epoch in (1, 2, 3):
        write_results_row(path, _row(epoch))
    write_results_row(path, _row(3) | {"time": 99.0})  # resumed from the state of epoch 2: epoch 3 runs again
    write_results_row(path, {k: _row(4)[k] for k in reversed(COLUMNS)})  # same columns in another order
    table = read_results(path)
    assert table["epoch"] == [1, 2, 3, 4] and table["time"] == [10, 20, 99, 40]
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)


def test_results_csv_refuses_other_columns_and_empty_rows(tmp_path) -> None:
    path = tmp_path / "results.csv"
    write_results_row(path, _row(1))
    with pytest.raises(ConfigError, match="header has columns"):
        write_results_row(path, {"epoch": 2, "loss": 1.0})
    with pytest.raises(ConfigError, match="non-empty row"):
        write_results_row(path, {})


def test_only_the_main_process_writes(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RANK", "1")
    assert write_results_row(tmp_path / "results.csv", _row(1)) is None
    assert plot_labels([np.array([[0, 0.5, 0.5, 0.2, 0.2]])], {0: "a"}, tmp_path / "labels.png") is None
    assert not list(tmp_path.iterdir())


def test_results_png_has_one_subplot_per_column(tmp_path) -> None:
    path = tmp_path / "results.csv"
    for epoch in range(1, 6):
        write_results_row(path, _row(epoch))
    out = plot_results(path, tmp_path / "results.png")
    with Image.open(out) as image:
        assert image.format == "PNG"
        assert image.size == (1500, 500)  # 7 value columns -> 5 per row x 2 rows, 300 x 250 px each
    three = tmp_path / "three.csv"
    write_results_row(three, {"epoch": 1, "a": 1.0, "b": 2.0, "c": 3.0})
    with Image.open(plot_results(three, tmp_path / "three.png")) as image:
        assert image.size == (900, 250)


def test_results_png_skips_a_file_without_rows(tmp_path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text(",".join(COLUMNS) + "\n")
    assert plot_results(empty, tmp_path / "results.png") is None and not (tmp_path / "results.png").exists()


def test_label_plot_from_image_labels_and_arrays(tmp_path) -> None:
    labels = [
        ImageLabels("a.jpg", (64, 64), np.array([0, 1]), np.array([[0.5, 0.5, 0.2, 0.3], [0.1, 0.2, 0.1, 0.1]],
                                                                    dtype=np.float32)),
        np.array([[2, 0.9, 0.9, 0.05, 0.05]]),
        np.zeros((0, 5)),  # a background image
    ]
    out = plot_labels(labels, {0: "cat", 1: "dog", 2: "bird"}, tmp_path / "labels.png")
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (1500, 500)
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.std() > 10  # something was drawn
    with pytest.raises(ConfigError, match=r"\(n, 5\) arrays"):
        plot_labels([np.zeros((2, 4))], {0: "cat"}, tmp_path / "bad.png")


def _batch() -> dict:
    """Two grey 64x64 images; image 0 has a class-0 box (16..48), image 1 a class-3 box (8..40 x 24..56)."""
    return {
        "img": torch.full((2, 3, 64, 64), 114, dtype=torch.uint8),
        "cls": torch.tensor([[0.0], [3.0]]),
        "bboxes": torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.375, 0.625, 0.5, 0.5]]),
        "batch_idx": torch.tensor([0.0, 1.0]),
        "im_file": ["/data/images/a.jpg", "/data/images/b.jpg"],
        "ori_shape": [(64, 64), (64, 64)], "resized_shape": [(64, 64), (64, 64)],
    }


def _close(pixel: np.ndarray, bgr: tuple[int, int, int], tolerance: int = 45) -> bool:
    return bool(np.abs(pixel.astype(int) - np.array(bgr)).max() <= tolerance)


def test_train_batch_mosaic_draws_the_boxes_where_they_are(tmp_path) -> None:
    out = plot_train_batch(_batch(), {0: "cat", 3: "star"}, tmp_path / "train_batch0.jpg")
    mosaic = cv2.imread(str(out))
    assert mosaic.shape == (64, 128, 3)  # 2 images side by side (ceil(sqrt(2)) = 2 columns)
    grey = (114, 114, 114)
    # image 0: box x 16..48, y 16..48 -> the left and bottom edges in class 0's colour, inside and outside grey
    assert _close(mosaic[40, 16], colors(0)) and _close(mosaic[48, 32], colors(0))
    assert _close(mosaic[44, 32], grey) and _close(mosaic[58, 8], grey)
    # image 1 sits at x offset 64: box x 8..40, y 24..56, class 3's colour
    assert _close(mosaic[44, 64 + 8], colors(3)) and _close(mosaic[56, 64 + 24], colors(3))
    assert _close(mosaic[50, 64 + 24], grey) and _close(mosaic[10, 64 + 56], grey)
    assert not _close(np.array(colors(0)), grey) and not _close(np.array(colors(3)), grey)


def test_train_batch_accepts_float_images_and_limits_the_count(tmp_path) -> None:
    batch = _batch()
    batch["img"] = torch.full((5, 3, 32, 32), 114 / 255)
    batch["im_file"] = [f"{i}.jpg" for i in range(5)]
    mosaic = cv2.imread(str(plot_train_batch(batch, {0: "cat", 3: "star"}, tmp_path / "b.jpg", max_images=4)))
    assert mosaic.shape == (64, 64, 3)  # 4 of the 5 images, 2 x 2
    assert _close(mosaic[48, 16], (114, 114, 114)) and _close(mosaic[48, 48], (114, 114, 114))  # no boxes there


def test_a_new_run_in_an_existing_directory_starts_a_new_results_csv(tmp_path):
    from types import SimpleNamespace

    from yolokit.train.output_hooks import ResultsHook

    csv_path = tmp_path / "results.csv"
    hook = ResultsHook()
    for start_epoch, kept in ((3, True), (0, False)):  # a resume keeps the table; a new run replaces it
        csv_path.write_text("epoch,train/dfl_loss\n1,0.5\n")
        hook.trainer = SimpleNamespace(run_dir=tmp_path, start_epoch=start_epoch)
        hook.before_train()
        assert csv_path.is_file() is kept
