"""The official yolov5n.pt (COCO, release v6.1) against the yolov5 repository's own outputs (fixture README).

The AGPL weights are never committed: these tests run when ``YOLOKIT_YOLOV5_FIXTURES`` names the folder holding
``yolov5n.pt``, ``bus.jpg``, ``zidane.jpg`` and ``yolov5n.expect.json`` (``.ci/run`` sets it from
``../shared/fixtures/yolov5``), and skip otherwise. Measured: boxes within 2e-4 px, scores within 2e-6.
"""

from __future__ import annotations

import json
import os
import pathlib

import pytest
import torch

from yolokit import YOLO
from yolokit.utils.io import sha256_file

FOLDER = pathlib.Path(os.environ.get("YOLOKIT_YOLOV5_FIXTURES", "/nonexistent"))
WEIGHTS = FOLDER / "yolov5n.pt"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not WEIGHTS.is_file(), reason="set YOLOKIT_YOLOV5_FIXTURES to "
              "the folder of the official yolov5n.pt fixture (AGPL weights, not in the repository)")]
BOX_PX, SCORE = 0.01, 1e-4  # asserted bounds (the issue's: 1 px, 2e-3)


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads((FOLDER / "yolov5n.expect.json").read_text())


@pytest.fixture(scope="module")
def model() -> YOLO:
    return YOLO(WEIGHTS)


def assert_detections(found: torch.Tensor, rows: list) -> None:
    """Same count and classes, boxes within ``BOX_PX`` pixels, scores within ``SCORE``."""
    want = torch.tensor(rows)
    assert found.shape == want.shape, (found, want)
    assert found[:, 5].tolist() == want[:, 5].tolist()
    assert (found[:, :4] - want[:, :4]).abs().max() < BOX_PX
    assert (found[:, 4] - want[:, 4]).abs().max() < SCORE


def _rows(result) -> torch.Tensor:
    boxes = result.boxes
    return torch.cat((boxes.xyxy, boxes.conf[:, None], boxes.cls[:, None]), 1)


def test_file_is_the_official_one_and_reads_as_yolov5(model: YOLO, expected: dict) -> None:
    assert sha256_file(WEIGHTS) == expected["weights_sha256"]
    provenance = model.metadata["provenance"]
    assert provenance["source"] == "yolov5" and provenance["release"] == "v6.0-v6.1"
    assert model.names == {int(k): v for k, v in expected["names"].items()}
    assert model.model.info(verbose=False)[:2] == (270, 1872157)  # the original's summary of this file


def test_raw_output_equals_the_original(model: YOLO, expected: dict) -> None:
    raw = expected["raw_output_fixed_input"]
    x = torch.rand(1, 3, 320, 320, generator=torch.Generator().manual_seed(7))
    net = model.model.eval()
    with torch.no_grad():
        out = net.head.decode_v5(net.head.forward_raw(net.head_inputs(x)))  # (1, 6300, 85)
    assert list(out.shape) == raw["shape"]
    assert out.sum().item() == pytest.approx(raw["sum"], rel=1e-6)
    torch.testing.assert_close(out[0, :5], torch.tensor(raw["first_5_rows"]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("image", ["bus.jpg", "zidane.jpg"])
def test_predict_gives_the_originals_detections(model: YOLO, expected: dict, image: str) -> None:
    result = model.predict(FOLDER / image, verbose=False)[0]  # the original's defaults: iou 0.45, max_det 1000
    assert_detections(_rows(result), expected["detections_xyxy_conf_cls"][image])


@pytest.mark.parametrize("image", ["bus.jpg", "zidane.jpg"])
def test_cli_predict_writes_the_originals_detections(tmp_path: pathlib.Path, expected: dict, image: str) -> None:
    from PIL import Image

    from yolokit.cli import main

    assert main(["predict", f"model={WEIGHTS}", f"source={FOLDER / image}", "save_txt=True", "save_conf=True",
                 f"project={tmp_path}", "name=run", "verbose=False"]) == 0
    lines = (tmp_path / "run" / "labels" / f"{pathlib.Path(image).stem}.txt").read_text().split("\n")
    found = torch.tensor([[float(v) for v in line.split()] for line in lines if line])  # cls xywhn conf
    want = torch.tensor(expected["detections_xyxy_conf_cls"][image])
    width, height = Image.open(FOLDER / image).size
    scale = torch.tensor([width, height, width, height])
    want_xywhn = torch.cat(((want[:, :2] + want[:, 2:4]) / 2, want[:, 2:4] - want[:, :2]), 1) / scale
    order = torch.argsort(found[:, 5], descending=True)  # label lines in score order, as the expected rows
    found = found[order]
    assert found[:, 0].tolist() == want[:, 5].tolist()
    assert (found[:, 5] - want[:, 4]).abs().max() < SCORE
    assert ((found[:, 1:5] - want_xywhn) * scale).abs().max() < BOX_PX + 1e-3  # txt rounding: 6 decimals


def test_safetensors_conversion_keeps_the_detections(model: YOLO, expected: dict, tmp_path: pathlib.Path) -> None:
    from yolokit.weights import detect_format
    from yolokit.weights.inspect import inspect_weights

    path = model.save(tmp_path / "yolov5n.safetensors")
    assert detect_format(path) == "safetensors"  # no pickle at all: the spec travels in the header
    assert inspect_weights(path)["origin"].startswith("YOLOv5 checkpoint, release v6.0-v6.1 (6x6-conv stem")
    converted = YOLO(path)
    for image in ("bus.jpg", "zidane.jpg"):
        assert_detections(_rows(converted.predict(FOLDER / image, verbose=False)[0]),
                          expected["detections_xyxy_conf_cls"][image])


def test_onnx_export_keeps_the_detections(model: YOLO, expected: dict, tmp_path: pathlib.Path) -> None:
    path = model.export(format="onnx", file=str(tmp_path / "yolov5n.onnx"))
    exported = YOLO(path)
    for image in ("bus.jpg", "zidane.jpg"):
        assert_detections(_rows(exported.predict(FOLDER / image, verbose=False)[0]),
                          expected["detections_xyxy_conf_cls"][image])


COCO8 = pathlib.Path(os.environ.get("YOLOKIT_COCO8", FOLDER.parent / "coco8")) / "coco8.yaml"
needs_coco8 = pytest.mark.skipif(not COCO8.is_file(), reason="needs the coco8 fixture beside the yolov5 one "
                                 "(../shared/fixtures/coco8, GPL-3.0 images, not in the repository) or YOLOKIT_COCO8")


@needs_coco8
def test_validation_uses_the_originals_val_defaults(model: YOLO, tmp_path: pathlib.Path, monkeypatch) -> None:
    """COCO-exact evaluator on real photographs with val.py's settings (conf 0.001, iou 0.6); a value you pass wins.
    Measured: mAP50-95 0.4707, mAP50 0.7047 on coco8's 4 val images (docs/yolov5.md)."""
    from yolokit.eval import validator

    seen = []
    original = validator.validate
    monkeypatch.setattr(validator, "validate", lambda backend, config, **kw: seen.append(config) or original(
        backend, config, **kw))
    metrics = model.val(data=str(COCO8), plots=False, project=str(tmp_path), verbose=False)
    assert (seen[0].iou, seen[0].conf) == (0.6, 0.001)
    assert metrics.map == pytest.approx(0.4707, abs=5e-4) and metrics.map50 == pytest.approx(0.7047, abs=5e-4)
    model.val(data=str(COCO8), iou=0.7, plots=False, project=str(tmp_path), verbose=False)
    assert seen[1].iou == 0.7


def test_cli_inspect_names_the_release_and_the_verdict(capsys) -> None:
    from yolokit.cli import main

    assert main(["inspect", str(WEIGHTS)]) == 0
    out = capsys.readouterr().out
    assert "yolov5-pt" in out and "SAFE" in out
    assert "YOLOv5 checkpoint, release v6.0-v6.1 (6x6-conv stem, C3, SPPF, SiLU; dated 2022-02-08)" in out
