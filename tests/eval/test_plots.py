"""Plot files: written atomically on the main process only, mosaics capped at 16 tiles."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from yolokit.eval.plots import plot_confusion_matrix, plot_image_mosaic

NAMES = {0: "rectangle", 1: "ellipse"}


def test_mosaic_tiles_at_most_16_images_and_draws_boxes(tmp_path: Path) -> None:
    images = [np.full((64, 96, 3), 114, np.uint8) for _ in range(20)]
    boxes = [np.array([[10.0, 10.0, 50.0, 40.0]])] * 20
    classes = [np.array([1])] * 20
    path = plot_image_mosaic(images, boxes, classes, None, NAMES, tmp_path / "labels.jpg", titles=["x.jpg"] * 20)
    mosaic = cv2.imread(str(path))
    assert mosaic.shape == (4 * 64, 4 * 96, 3)  # 16 tiles in a 4x4 grid
    assert np.abs(mosaic.astype(int) - 114).max() > 60  # boxes and labels were drawn on the grey tiles
    low_conf = plot_image_mosaic(images[:1], boxes[:1], classes[:1], [np.array([0.1])], NAMES, tmp_path / "p.jpg")
    tile = cv2.imread(str(low_conf))[3:-3, 3:-3]  # inside the white tile border
    assert np.abs(tile.astype(int) - 114).max() < 40  # below the 0.25 plot threshold: nothing drawn


def test_confusion_matrix_png_and_non_main_rank(tmp_path: Path, monkeypatch) -> None:
    matrix = np.array([[3, 1, 0], [0, 2, 1], [1, 0, 0]])
    path = plot_confusion_matrix(matrix, NAMES, tmp_path / "cm.png", normalize=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setenv("RANK", "1")
    assert plot_confusion_matrix(matrix, NAMES, tmp_path / "other.png") is None
    assert not (tmp_path / "other.png").exists()
