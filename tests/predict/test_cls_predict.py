"""Classification predict: Probs, ClassifyResults (plot, save_txt, summary) and the predictor's saved outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from yolokit import YOLO
from yolokit.errors import ConfigError
from yolokit.predict.classify_results import ClassifyResults, Probs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CHECKPOINT = FIXTURES / "cls" / "yolo11-cls-tiny-random.pt"
NAMES = {0: "a", 1: "b", 2: "c", 3: "d", 4: "e", 5: "f"}


def test_probs_top1_top5_and_conversions():
    probs = Probs(torch.tensor([0.05, 0.4, 0.1, 0.3, 0.02, 0.13]))
    assert probs.top1 == 1 and probs.top5 == [1, 3, 5, 2, 0]
    assert float(probs.top1conf) == pytest.approx(0.4)
    assert probs.top5conf.tolist() == pytest.approx([0.4, 0.3, 0.13, 0.1, 0.05])
    as_numpy = probs.numpy()
    assert isinstance(as_numpy.data, np.ndarray) and as_numpy.top5 == probs.top5
    assert Probs(np.array([0.2, 0.8])).top5 == [1, 0]  # fewer than five classes
    with pytest.raises(ValueError, match="expected a"):
        Probs(torch.zeros(2, 3))


def make_result(path="img.jpg") -> ClassifyResults:
    image = np.full((120, 160, 3), 90, np.uint8)
    return ClassifyResults(image, path, NAMES, torch.tensor([0.05, 0.4, 0.1, 0.3, 0.02, 0.13]))


def test_text_outputs_follow_the_reference_formats(tmp_path):
    result = make_result()
    assert result.verbose() == "b 0.40, d 0.30, f 0.13, c 0.10, a 0.05, "
    assert result.summary() == [{"name": "b", "class": 1, "confidence": 0.4}]
    assert json.loads(result.to_json()) == result.summary()
    path = Path(result.save_txt(tmp_path / "labels" / "img.txt"))
    assert path.read_text() == "0.40 b\n0.30 d\n0.13 f\n0.10 c\n0.05 a\n"
    assert len(result) == 1 and result.boxes is None


def test_plot_writes_the_top5_at_the_top_left_only():
    result = make_result()
    plotted = result.plot()
    changed = np.argwhere((plotted != result.orig_img).any(2))
    assert len(changed) > 100 and (result.orig_img == 90).all()  # the original is untouched
    assert changed[:, 0].max() < 80 and changed[:, 1].max() < 100  # five short lines at the top-left corner
    assert np.array_equal(result.plot(labels=False), result.orig_img)


def test_save_crop_sorts_into_the_top1_folder(tmp_path):
    written = make_result("x/pic.png").save_crop(tmp_path)
    assert written == [str(tmp_path / "b" / "pic.jpg")] and Path(written[0]).is_file()
    assert make_result("x/pic.png").save_crop(tmp_path) == [str(tmp_path / "b" / "pic2.jpg")]


def test_predictor_saves_images_and_label_files(tmp_path):
    model = YOLO(CHECKPOINT)
    images = [str(FIXTURES / "cls" / "wide.jpg"), str(FIXTURES / "cls" / "tall.jpg")]
    results = model.predict(images, save=True, save_txt=True, project=str(tmp_path), name="p", verbose=False)
    run = tmp_path / "p"
    assert sorted(p.name for p in run.iterdir()) == ["labels", "tall.jpg", "wide.jpg"]
    for result in results:
        lines = (run / "labels" / f"{Path(result.path).stem}.txt").read_text().splitlines()
        assert lines == [f"{float(result.probs.data[j]):.2f} {model.names[j]}" for j in result.probs.top5]
        assert result.save_dir == str(run)
    assert model.predict(images[0], nms=True, verbose=False)[0].probs.top1 == results[0].probs.top1
    with pytest.raises(ConfigError, match="classifier has no NMS"):
        model.predict(images[0], nms=False, engine="eager", verbose=False)


def test_predict_accepts_arrays_and_other_sizes():
    model = YOLO(CHECKPOINT)
    image = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    result = model.predict(image, imgsz=96, verbose=False)[0]
    assert result.orig_shape == (50, 70) and result.probs.data.shape == (3,)
    assert float(result.probs.data.sum()) == pytest.approx(1.0, abs=1e-5)
