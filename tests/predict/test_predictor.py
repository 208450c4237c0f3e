"""The predict loop with a scripted stand-in backend: scaling back, batching, head choice, outputs and logs."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from yolokit.config import PredictConfig
from yolokit.errors import ConfigError
from yolokit.predict.predictor import Predictor

# A 100x200 (h x w) image at imgsz=64 becomes a 32x64 input (r = 0.32, no pad); the scripted box
# [16, 8, 48, 24] in input pixels is [50, 25, 150, 75] in the original.
BOX_INPUT = [16.0, 8.0, 48.0, 24.0]
BOX_ORIGINAL = [50.0, 25.0, 150.0, 75.0]


class ScriptedBackend:
    """Returns the same detections for every image: a class-1 box (0.9) and a weak class-0 box (0.1)."""

    stride = 32
    dynamic = True

    def __init__(self, end2end: bool = False) -> None:
        self.names = {0: "rectangle", 1: "ellipse"}
        self.end2end = end2end
        self.nms_free = False
        self.calls: list[tuple[int, ...]] = []

    def set_nms_free(self, flag: bool) -> None:
        if flag and not self.end2end:
            raise ConfigError("nms=False needs an end-to-end model")
        self.nms_free = flag

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(batch.shape))
        b = batch.shape[0]
        if self.nms_free:
            rows = torch.tensor([[*BOX_INPUT, 0.8, 1.0], [0.0, 0.0, 8.0, 8.0, 0.2, 0.0]])
            return rows.expand(b, -1, -1).clone()
        x1, y1, x2, y2 = BOX_INPUT
        pred = torch.tensor([
            [(x1 + x2) / 2, 4.0], [(y1 + y2) / 2, 4.0], [x2 - x1, 8.0], [y2 - y1, 8.0],  # xywh of 2 anchors
            [0.0, 0.1], [0.9, 0.0],  # class scores
        ])
        return pred.expand(b, -1, -1).clone()  # (B, 6, 2)


def image(h: int = 100, w: int = 200) -> np.ndarray:
    return np.full((h, w, 3), 90, dtype=np.uint8)


def run(config: PredictConfig, source, backend: ScriptedBackend | None = None):
    backend = backend or ScriptedBackend()
    return Predictor(backend, config).predict(source), backend


def test_boxes_are_scaled_back_and_filtered():
    results, backend = run(PredictConfig(imgsz=64, verbose=False), image())
    assert backend.calls == [(1, 3, 32, 64)]
    assert len(results) == 1 and results[0].orig_shape == (100, 200)
    data = results[0].boxes.data
    assert data.shape == (1, 6)
    assert torch.allclose(data[0, :4], torch.tensor(BOX_ORIGINAL), atol=1e-4)
    assert data[0, 4:].tolist() == pytest.approx([0.9, 1.0])
    assert set(results[0].speed) == {"preprocess", "inference", "postprocess"}
    low, _ = run(PredictConfig(imgsz=64, conf=0.05, verbose=False), image())
    assert low[0].boxes.cls.tolist() == [1.0, 0.0]
    assert torch.allclose(low[0].boxes.xyxy[1], torch.tensor([0.0, 0.0, 25.0, 25.0]))  # 8 px input / 0.32
    only_rect, _ = run(PredictConfig(imgsz=64, conf=0.05, classes=(0,), verbose=False), image())
    assert only_rect[0].boxes.cls.tolist() == [0.0]
    capped, _ = run(PredictConfig(imgsz=64, conf=0.05, max_det=1, verbose=False), image())
    assert len(capped[0]) == 1


def test_batches_keep_order_and_use_square_for_mixed_shapes():
    sources = [image(100, 200), image(100, 200), image(64, 64), image(50, 100), image(30, 60)]
    results, backend = run(PredictConfig(imgsz=64, batch=2, verbose=False), sources)
    assert [r.orig_shape for r in results] == [(100, 200), (100, 200), (64, 64), (50, 100), (30, 60)]
    assert backend.calls == [(2, 3, 32, 64), (2, 3, 64, 64), (1, 3, 32, 64)]


def test_nms_free_head_choice():
    backend = ScriptedBackend(end2end=True)
    results, _ = run(PredictConfig(imgsz=64, nms=False, verbose=False), image(), backend)
    assert backend.nms_free is True
    assert results[0].boxes.conf.tolist() == pytest.approx([0.8])
    assert torch.allclose(results[0].boxes.xyxy[0], torch.tensor(BOX_ORIGINAL), atol=1e-4)
    run(PredictConfig(imgsz=64, end2end=True, verbose=False), image(), backend)
    assert backend.nms_free is True
    run(PredictConfig(imgsz=64, verbose=False), image(), backend)
    assert backend.nms_free is False
    with pytest.raises(ConfigError, match="end-to-end"):
        run(PredictConfig(nms=False), image())


def test_stream_is_lazy():
    backend = ScriptedBackend()
    stream = Predictor(backend, PredictConfig(imgsz=64, verbose=False)).stream([image()] * 3)
    first = next(stream)
    assert len(first) == 1 and len(backend.calls) == 1
    assert len(list(stream)) == 2 and len(backend.calls) == 3


def test_saves_images_labels_and_logs(tmp_path, caplog):
    import cv2

    source = tmp_path / "in" / "img.jpg"
    source.parent.mkdir()
    cv2.imwrite(str(source), image())
    config = PredictConfig(imgsz=64, save=True, save_txt=True, save_conf=True, project=str(tmp_path / "runs"),
                           name="predict")
    with caplog.at_level(logging.INFO, logger="yolokit.predict.predictor"):
        results, _ = run(config, str(source))
    run_dir = tmp_path / "runs" / "predict"
    assert results[0].save_dir == str(run_dir)
    saved = cv2.imread(str(run_dir / "img.jpg"))
    assert saved.shape == (100, 200, 3)
    assert (run_dir / "labels" / "img.txt").read_text() == "1 0.5 0.5 0.5 0.5 0.9\n"
    text = caplog.text
    assert f"image 1/1 {source}: 32x64 1 ellipse, " in text
    assert "Speed: " in text and "per image at shape (1, 3, 32, 64)" in text
    assert f"Results saved to {run_dir}" in text
    run(config, str(source))
    assert (tmp_path / "runs" / "predict2" / "img.jpg").exists()  # numbered run directory
    run(PredictConfig(imgsz=64, save=True, project=str(tmp_path / "runs"), name="predict", exist_ok=True), image())
    assert (run_dir / "image0.jpg").exists()  # reused with exist_ok


def test_nothing_saved_by_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run(PredictConfig(imgsz=64, verbose=False), image())
    assert list(tmp_path.iterdir()) == []


def test_video_written_frame_by_frame(tmp_path, caplog):
    import cv2

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (200, 100))
    for value in (40, 80, 120, 160):
        writer.write(image() * 0 + value)
    writer.release()
    config = PredictConfig(imgsz=64, save=True, save_txt=True, project=str(tmp_path / "runs"), name="v")
    with caplog.at_level(logging.INFO, logger="yolokit.predict.predictor"):
        results, _ = run(config, str(video))
    assert len(results) == 4
    out = tmp_path / "runs" / "v" / "clip.mp4"
    capture = cv2.VideoCapture(str(out))
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    assert frames == 4
    assert sorted(p.name for p in (tmp_path / "runs" / "v" / "labels").iterdir()) == [
        "clip_1.txt", "clip_2.txt", "clip_3.txt", "clip_4.txt"]
    assert "(frame 3/4)" in caplog.text and "video 1" in caplog.text


def test_corrupt_file_in_folder_is_a_warning(tmp_path, caplog):
    import cv2

    cv2.imwrite(str(tmp_path / "good.jpg"), image())
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with caplog.at_level(logging.WARNING):
        results, _ = run(PredictConfig(imgsz=64, verbose=False), str(tmp_path))
    assert [r.path.endswith("good.jpg") for r in results] == [True]
    assert "bad.jpg" in caplog.text
