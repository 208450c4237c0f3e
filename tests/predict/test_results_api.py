"""Boxes / Results API on hand-computed values: views, text outputs, JSON, plotting."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from yolokit.predict.draw import colors, draw_boxes, text_color
from yolokit.predict.results import Boxes, Results

NAMES = {0: "person", 1: "bus", 2: "cat"}
DATA = torch.tensor([
    [10.0, 20.0, 50.0, 60.0, 0.9, 0.0],
    [100.0, 0.0, 200.0, 100.0, 0.8, 1.0],
    [0.0, 50.0, 20.0, 100.0, 0.5, 0.0],
])


def make_results(data: torch.Tensor = DATA) -> Results:
    image = np.full((100, 200, 3), 60, dtype=np.uint8)  # h=100, w=200
    return Results(image, "/data/img.jpg", NAMES, data, speed={"preprocess": 1.0, "inference": 2.0,
                                                              "postprocess": 3.0})


def test_boxes_views_hand_computed():
    boxes = make_results().boxes
    assert len(boxes) == 3 and boxes.shape == (3, 6) and boxes.id is None and not boxes.is_track
    assert torch.equal(boxes.xywh[0], torch.tensor([30.0, 40.0, 40.0, 40.0]))
    assert torch.allclose(boxes.xyxyn[1], torch.tensor([0.5, 0.0, 1.0, 1.0]))
    assert torch.allclose(boxes.xywhn[0], torch.tensor([0.15, 0.4, 0.2, 0.4]))
    assert torch.equal(boxes.conf, torch.tensor([0.9, 0.8, 0.5]))
    assert torch.equal(boxes.cls, torch.tensor([0.0, 1.0, 0.0]))
    assert len(boxes[1]) == 1 and torch.equal(boxes[1].data, DATA[1:2])
    as_numpy = boxes.numpy()
    assert isinstance(as_numpy.data, np.ndarray) and np.allclose(as_numpy.xywhn[0], [0.15, 0.4, 0.2, 0.4])
    assert isinstance(boxes.cpu().data, torch.Tensor) and boxes.to(torch.float64).data.dtype == torch.float64
    tracked = Boxes(torch.tensor([[0.0, 0, 1, 1, 7, 0.5, 2]]), (10, 10))
    assert tracked.is_track and tracked.id.tolist() == [7.0] and tracked.conf.tolist() == [0.5]
    with pytest.raises(ValueError, match=r"\(N, 6\)"):
        Boxes(torch.zeros(2, 5), (10, 10))


def test_results_fields_and_conversions():
    results = make_results()
    assert results.orig_shape == (100, 200) and results.path == "/data/img.jpg" and len(results) == 3
    assert results.speed == {"preprocess": 1.0, "inference": 2.0, "postprocess": 3.0}
    converted = results.numpy()
    assert converted is not results and isinstance(converted.boxes.data, np.ndarray)
    assert isinstance(results.boxes.data, torch.Tensor)  # original unchanged
    assert len(results[0:2]) == 2
    empty = Results(np.zeros((5, 5, 3), np.uint8), "x.jpg", NAMES)
    assert len(empty) == 0 and empty.boxes.data.shape == (0, 6)


def test_verbose_text():
    assert make_results().verbose() == "2 persons, 1 bus, "
    assert make_results(DATA[:0]).verbose() == "(no detections), "
    assert make_results(DATA[1:2]).verbose() == "1 bus, "


def test_plural_of_class_names():
    from yolokit.predict.results import _plural

    assert [_plural(n, 2) for n in ("bus", "cross", "box", "person", "bench")] == [
        "buses", "crosses", "boxes", "persons", "benches"]
    assert _plural("bus", 1) == "bus"


def test_save_txt_rows_and_append(tmp_path):
    path = tmp_path / "labels" / "img.txt"
    make_results().save_txt(path)
    lines = path.read_text().splitlines()
    assert lines == ["0 0.15 0.4 0.2 0.4", "1 0.75 0.5 0.5 1", "0 0.05 0.75 0.1 0.5"]
    make_results(DATA[:1]).save_txt(path, save_conf=True)  # appends, like the reference
    assert path.read_text().splitlines()[-1] == "0 0.15 0.4 0.2 0.4 0.9"
    none = tmp_path / "none.txt"
    make_results(DATA[:0]).save_txt(none)
    assert not none.exists()


def test_summary_and_json_round_trip():
    results = make_results()
    summary = results.summary()
    assert summary[1] == {"name": "bus", "class": 1, "confidence": 0.8,
                          "box": {"x1": 100.0, "y1": 0.0, "x2": 200.0, "y2": 100.0}}
    normalized = results.summary(normalize=True, decimals=3)
    assert normalized[0]["box"] == {"x1": 0.05, "y1": 0.2, "x2": 0.25, "y2": 0.6}
    assert json.loads(results.to_json()) == summary
    assert json.loads(make_results(DATA[:0]).to_json()) == []


def test_plot_draws_only_where_boxes_are(tmp_path):
    results = make_results(DATA[1:2])
    plotted = results.plot()
    assert plotted.shape == results.orig_img.shape and plotted.dtype == np.uint8
    assert (results.orig_img == 60).all()  # the original is untouched
    changed = (plotted != results.orig_img).any(axis=2)
    assert changed[:, 98:].any()  # the box edge and label around x >= 100
    assert not changed[:, :90].any()  # nothing far left of the box
    assert np.array_equal(results.plot(boxes=False), results.orig_img)
    no_labels = results.plot(labels=False)
    assert changed.sum() > (no_labels != results.orig_img).any(axis=2).sum()  # the label adds pixels
    saved = results.save(tmp_path / "out.png")
    import cv2

    assert np.array_equal(cv2.imread(saved), plotted)


def test_draw_helpers():
    assert colors(0) == colors(20) and colors(0) != colors(1)
    assert text_color((255, 255, 255)) == (0, 0, 0) and text_color((0, 0, 0)) == (255, 255, 255)
    image = np.zeros((50, 50, 3), np.uint8)
    out = draw_boxes(image, np.array([[5, 5, 40, 40]]), [2], [0.5], NAMES, line_width=2)
    assert out is image and image.any()
    with pytest.raises(ValueError, match="one per box"):
        draw_boxes(image, np.array([[5, 5, 40, 40]]), [2, 1])


def test_save_crop_regions_names_and_numbering(tmp_path):
    import cv2

    y, x = np.mgrid[0:100, 0:200]
    image = np.stack([x, 2 * y, np.full_like(x, 128)], -1).astype(np.uint8)  # smooth: survives JPEG, no two alike
    results = Results(image, "/data/img.jpg", NAMES, DATA)
    written = results.save_crop(tmp_path)
    assert written == [str(tmp_path / "person" / "img.jpg"), str(tmp_path / "bus" / "img.jpg"),
                       str(tmp_path / "person" / "img2.jpg")]
    # box 0 (10, 20, 50, 60): centre (30, 40), half size 40 * 1.02 / 2 + 10 = 30.4 -> x [0, 61), y [9, 71)
    crop = cv2.imread(written[0], cv2.IMREAD_UNCHANGED)
    assert crop.shape == (71 - 9, 61 - 0, 3)
    assert np.abs(crop.astype(int) - image[9:71, 0:61].astype(int)).mean() < 1.5  # that region, JPEG-close
    assert np.abs(crop.astype(int) - image[11:73, 2:63].astype(int)).mean() > 2  # and not one 2 px away
    assert cv2.imread(written[1]).shape == (100, 200 - 89, 3)  # box 1 clipped at the image's right/top/bottom
    again = results.save_crop(tmp_path, file_name="frame.png")
    assert again[0].endswith("person/frame.jpg") and again[2].endswith("person/frame2.jpg")
    assert Results(image, "e.jpg", NAMES).save_crop(tmp_path / "empty") == []
    assert not (tmp_path / "empty").exists()


def test_show_opens_the_annotated_image(monkeypatch):
    from PIL import Image

    shown = []
    monkeypatch.setattr(Image.Image, "show", lambda self, title=None: shown.append((self.size, self.mode, title)))
    make_results().show()
    assert shown == [((200, 100), "RGB", "img.jpg")]
