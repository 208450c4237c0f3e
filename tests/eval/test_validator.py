"""validate(): batching, geometry, outputs and errors, with an oracle stand-in backend and a real fixture model."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from yolokit.config import ValConfig, make_config
from yolokit.errors import ConfigError, DatasetError
from yolokit.eval.validator import plan_batches, prepare_image, unletterbox, validate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NAMES = {0: "rectangle", 1: "ellipse", 2: "triangle"}
IMGSZ = 128
# (h, w) of each image: landscape, portrait and square, so rect batches get different shapes
SIZES = [(100, 200), (90, 240), (200, 100), (240, 96), (150, 150), (128, 128), (64, 200)]


def write_dataset(root: Path) -> tuple[Path, dict[int, tuple[tuple[int, int], np.ndarray]]]:
    """PNG images with a unique solid colour each (the oracle recognises them) and random labels."""
    import cv2

    rng = np.random.default_rng(0)
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    truth = {}
    for k, (h, w) in enumerate(SIZES):
        cv2.imwrite(str(root / "images" / "val" / f"{k:03d}.png"), np.full((h, w, 3), (20 * k + 10, 60, 200), np.uint8))
        rows = []
        for j in range(k % 4):  # image 0 and 4 have no objects
            bw, bh = rng.uniform(0.1, 0.3, 2)
            cx = 0.2 + 0.3 * j + rng.uniform(-0.02, 0.02)
            rows.append([j % 3, cx, rng.uniform(0.3, 0.7), bw, bh])
        labels = np.array(rows, dtype=np.float64).reshape(-1, 5)
        text = "".join(f"{int(c)} {x:.6f} {y:.6f} {bw:.6f} {bh:.6f}\n" for c, x, y, bw, bh in labels)
        (root / "labels" / "val" / f"{k:03d}.txt").write_text(text)
        truth[20 * k + 10] = ((h, w), labels)
    yaml = root / "data.yaml"
    yaml.write_text(f"path: {root}\nval: images/val\nnames:\n" + "".join(f"  {k}: {v}\n" for k, v in NAMES.items()))
    return yaml, truth


class OracleBackend:
    """Stand-in with the TorchBackend surface: recognises each image by colour and outputs its ground truth, mapped
    into the letterboxed input with an independent implementation of the resize + centred-padding rule."""

    stride, dynamic = 32, True

    def __init__(self, truth: dict, end2end: bool = False) -> None:
        self.truth, self.end2end, self.nms_free, self.shapes = truth, end2end, False, []
        self.names = dict(NAMES)

    def set_nms_free(self, flag: bool) -> None:
        self.nms_free = flag

    def _boxes(self, image: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        height, width = image.shape[1:]
        key = round(float(image[2, height // 2, width // 2]) * 255)  # channel 2 (RGB) = blue = our key
        (h0, w0), labels = self.truth[key]
        r = IMGSZ / max(h0, w0)
        w1, h1 = min(round(w0 * r), IMGSZ), min(round(h0 * r), IMGSZ)
        left, top = round((width - w1) / 2 - 0.1), round((height - h1) / 2 - 0.1)
        cx, cy = labels[:, 1] * w1 + left, labels[:, 2] * h1 + top
        return np.stack([cx, cy, labels[:, 3] * w1, labels[:, 4] * h1], axis=1), labels[:, 0].astype(int)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(batch.shape[2:]))
        slots = 8
        if self.nms_free:  # (B, K, 6) xyxy, score, class
            out = torch.zeros(len(batch), slots, 6)
            for b, image in enumerate(batch):
                xywh, cls = self._boxes(image)
                for i, (box, c) in enumerate(zip(xywh, cls, strict=True)):
                    out[b, i] = torch.tensor([*(box[:2] - box[2:] / 2), *(box[:2] + box[2:] / 2), 0.9, c])
            return out
        out = torch.zeros(len(batch), 4 + len(NAMES), slots)  # (B, 4+nc, A) xywh + class scores
        for b, image in enumerate(batch):
            xywh, cls = self._boxes(image)
            out[b, :4, : len(cls)] = torch.from_numpy(xywh.T.copy()).float()
            out[b, 4 + cls, np.arange(len(cls))] = 0.9
        return out


def test_plan_batches_rect_shapes() -> None:
    shapes = np.array([[100, 200], [150, 200], [200, 100], [300, 300]])  # ratios 0.5, 0.75, 2, 1
    plan = plan_batches(shapes, 320, 32, 2, rect=True)
    assert [list(idx) for idx, _ in plan] == [[0, 1], [3, 2]]  # sorted by h/w
    # landscape batch: h = ceil(0.75*320/32 + 0.5)*32 = 256, w = ceil(10.5)*32 = 352; mixed batch: square 352
    assert [shape for _, shape in plan] == [(256, 352), (352, 352)]
    assert plan_batches(shapes[2:3], 320, 32, 2, rect=True)[0][1] == (352, 192)  # portrait: w = ceil(5.5)*32
    assert [s for _, s in plan_batches(shapes, 300, 32, 3, rect=False)] == [(320, 320), (320, 320)]


def test_prepare_image_and_unletterbox_round_trip() -> None:
    image = np.zeros((90, 240, 3), np.uint8)
    padded, mapping = prepare_image(image, 128, (96, 160), 32)
    assert padded.shape == (96, 160, 3)
    boxes = np.array([[10.0, 5.0, 100.0, 80.0], [0.0, 0.0, 240.0, 90.0]])
    gain_x, gain_y, left, top = mapping
    forward = boxes * [gain_x, gain_y, gain_x, gain_y] + [left, top, left, top]
    det = torch.from_numpy(np.concatenate([forward, [[0.5, 0], [0.5, 1]]], axis=1))
    back = unletterbox(det, mapping, (90, 240)).numpy()
    np.testing.assert_allclose(back[:, :4], boxes, atol=1e-9)


@pytest.mark.parametrize("end2end", [False, True])
def test_oracle_backend_gets_perfect_map_and_outputs(tmp_path: Path, caplog, end2end: bool) -> None:
    yaml, truth = write_dataset(tmp_path / "data")
    backend = OracleBackend(truth, end2end=end2end)
    config = make_config(ValConfig, data=str(yaml), imgsz=IMGSZ, batch=3, nms=not end2end, plots=not end2end,
                         verbose=False)
    with caplog.at_level(logging.INFO, logger="yolokit.eval.validator"):
        metrics = validate(backend, config, save_dir=tmp_path / "run")
    assert metrics.map == pytest.approx(1.0, abs=1e-9) and metrics.map75 == pytest.approx(1.0, abs=1e-9)
    assert (metrics.precision, metrics.recall, metrics.num_images, metrics.num_instances) == (1.0, 1.0, 7, 9)
    assert len(set(backend.shapes)) == 3 and all(h % 32 == 0 and w % 32 == 0 for h, w in backend.shapes)
    assert backend.nms_free is False  # restored after an end-to-end run
    assert any(r.getMessage().startswith("Speed: ") for r in caplog.records)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["metrics"]["map50"] == pytest.approx(1.0) and saved["config"]["imgsz"] == IMGSZ
    assert saved["head"] == ("end2end" if end2end else "nms") and set(saved["speed_ms_per_image"]) == {
        "preprocess", "inference", "postprocess"}
    assert len(json.loads((tmp_path / "run" / "predictions.json").read_text())) == 9
    pngs = {p.name for p in (tmp_path / "run").iterdir()}
    expected = {"confusion_matrix.png", "confusion_matrix_normalized.png", "PR_curve.png", "F1_curve.png",
                "P_curve.png", "R_curve.png", "val_batch0_labels.jpg", "val_batch2_pred.jpg"}
    assert expected <= pngs if not end2end else not (expected & pngs)


def test_validate_errors(tmp_path: Path) -> None:
    yaml, truth = write_dataset(tmp_path / "data")
    with pytest.raises(ConfigError, match="one-to-one head"):
        validate(OracleBackend(truth), make_config(ValConfig, data=str(yaml), nms=False), save_dir=tmp_path / "r")
    wrong = OracleBackend(truth)
    wrong.names = {0: "a"}
    with pytest.raises(DatasetError, match="3 classes but the model predicts 1"):
        validate(wrong, make_config(ValConfig, data=str(yaml)), save_dir=tmp_path / "r")
    with pytest.raises(DatasetError):
        validate(OracleBackend(truth), make_config(ValConfig, data=str(yaml), split="test"), save_dir=tmp_path / "r")


def test_run_directory_is_numbered(tmp_path: Path) -> None:
    yaml, truth = write_dataset(tmp_path / "data")
    config = make_config(ValConfig, data=str(yaml), imgsz=IMGSZ, plots=False, verbose=False,
                         project=str(tmp_path / "runs"), name="val")
    first = validate(OracleBackend(truth), config)
    second = validate(OracleBackend(truth), dataclasses.replace(config, workers=2, rect=False))  # threaded loading
    assert first.map == second.map == pytest.approx(1.0)
    assert (tmp_path / "runs" / "val" / "metrics.json").exists()
    assert (tmp_path / "runs" / "val2" / "metrics.json").exists()


def test_only_the_main_process_writes(tmp_path: Path, monkeypatch) -> None:
    yaml, truth = write_dataset(tmp_path / "data")
    monkeypatch.setenv("RANK", "1")
    config = make_config(ValConfig, data=str(yaml), imgsz=IMGSZ, verbose=False, project=str(tmp_path / "runs"))
    assert validate(OracleBackend(truth), config).map == pytest.approx(1.0)
    assert not (tmp_path / "runs").exists()


def _pycocotools_map(predictions: list[dict], dataset_yaml: Path) -> float:
    """COCOeval mAP50-95 from predictions.json and the dataset's YOLO labels."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from yolokit.data.dataset import DetectionDataset, load_data_config

    dataset = DetectionDataset(load_data_config(dataset_yaml), "val", cache=False, progress=False)
    images, annotations = [], []
    for i, label in enumerate(dataset.labels):
        h, w = label.shape
        images.append({"id": i, "height": h, "width": w})
        for c, (cx, cy, bw, bh) in zip(label.cls, label.bboxes.astype(np.float64), strict=True):
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(c), "iscrowd": 0,
                                "bbox": [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h],
                                "area": bw * w * bh * h})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations,
                      "categories": [{"id": k} for k in range(dataset.nc)]}
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(predictions), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[0])


@pytest.mark.slow
def test_fixture_model_on_synthetic_shapes(tmp_path: Path) -> None:
    pytest.importorskip("pycocotools")
    from yolokit.backends import TorchBackend
    from yolokit.data.synth import make_synthetic_dataset
    from yolokit.weights import load_weights

    yaml = make_synthetic_dataset(tmp_path / "shapes", n_train=1, n_val=16, imgsz=320, seed=0)
    backend = TorchBackend(load_weights(FIXTURES / "yolo11-tiny-shapes.pt"), num_threads=1)
    config = make_config(ValConfig, data=str(yaml), imgsz=320, batch=8, verbose=False)
    metrics = validate(backend, config, save_dir=tmp_path / "run")
    values = [metrics.map, metrics.map50, metrics.map75, metrics.precision, metrics.recall, metrics.f1]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert metrics.map50 > 0.15 and metrics.map50 >= metrics.map >= 0.08  # observed 0.3 / 0.21 on 32 images
    assert (tmp_path / "run" / "PR_curve.png").stat().st_size > 10_000
    predictions = json.loads((tmp_path / "run" / "predictions.json").read_text())
    assert _pycocotools_map(predictions, yaml) == pytest.approx(metrics.map, abs=2e-3)
