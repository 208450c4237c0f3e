"""CLI modes end to end through main([...]): exit codes, printed lines and written files."""

import json
from pathlib import Path

import pytest

from yolokit.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
SHAPES = FIXTURES / "yolo26-tiny-shapes.pt"


def test_info_prints_reference_style_summary(capsys):
    assert main(["info", "model=yolov8n.yaml"]) == 0
    out = capsys.readouterr().out
    assert "YOLOv8n summary: 129 layers, 3,157,200 parameters, 3,157,184 gradients, 8.9 GFLOPs" in out


def test_info_detailed_lists_parameters(capsys):
    assert main(["info", "model=yolov8n.yaml", "detailed=True", "imgsz=320"]) == 0
    out = capsys.readouterr().out
    assert "model.22.dfl.conv.weight" in out and "False" in out  # the frozen DFL weight


def test_inspect_text_and_json(capsys):
    assert main(["inspect", str(SHAPES)]) == 0
    text = capsys.readouterr().out
    assert "ultralytics" in text.lower() and "triangle" in text
    assert main(["inspect", str(SHAPES), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "ultralytics-pt"
    assert report["safety"]["verdict"] == "safe"


def test_inspect_missing_file_is_one_line_error(capsys, tmp_path):
    assert main(["inspect", str(tmp_path / "nope.pt")]) == 2
    err = capsys.readouterr().err
    assert "nope.pt" in err and err.count("\n") == 1


def test_convert_then_predict_writes_images_and_labels(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "w.safetensors"
    assert main(["convert", str(SHAPES), str(out)]) == 0
    assert out.is_file() and "Converted" in capsys.readouterr().out
    images = str(FIXTURES / "images")
    argv = ["predict", f"model={out}", f"source={images}", "imgsz=320", "conf=0.05", "save_txt=True",
            "save_crop=True"]
    assert main(argv) == 0
    log = capsys.readouterr().out
    assert "image 4/4" in log and "Results saved to" in log
    run = tmp_path / "runs" / "predict"
    assert sorted(p.name for p in run.glob("*.jpg")) == ["00000.jpg", "00001.jpg", "00002.jpg", "00003.jpg"]
    rows = (run / "labels" / "00000.txt").read_text().splitlines()
    assert rows and all(len(row.split()) == 5 for row in rows)
    crops = list((run / "crops").glob("*/00000*.jpg"))  # one crop per box, in crops/<class name>/
    assert len(crops) == len(rows) and {c.parent.name for c in crops} <= {"rectangle", "ellipse", "triangle"}
    assert main(argv) == 0
    assert (tmp_path / "runs" / "predict2").is_dir()


def test_predict_nms_false_uses_end_to_end_head(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    image = str(FIXTURES / "images" / "00001.jpg")
    assert main(["predict", f"model={SHAPES}", f"source={image}", "imgsz=320", "nms=False", "save=False"]) == 0
    assert "image 1/1" in capsys.readouterr().out


def test_predict_bad_source_is_one_line_error(capsys, tmp_path):
    assert main(["predict", f"model={SHAPES}", f"source={tmp_path / 'missing.jpg'}"]) == 2
    err = capsys.readouterr().err
    assert "missing.jpg" in err and err.count("\n") == 1


@pytest.mark.slow
def test_data_synth_then_val_writes_table_json_and_plots(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["data", "synth", "ds", "--train", "2", "--val", "8", "--imgsz", "320", "--seed", "1"]) == 0
    assert (tmp_path / "ds" / "data.yaml").is_file()
    capsys.readouterr()
    assert main(["val", f"model={SHAPES}", "data=ds/data.yaml", "imgsz=320", "batch=4"]) == 0
    out = capsys.readouterr().out
    assert "mAP50-95" in out and "rectangle" in out and "Speed:" in out
    run = tmp_path / "runs" / "val"
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 < metrics["metrics"]["map"] <= metrics["metrics"]["map50"] <= 1.0
    assert metrics["num_images"] == 8 and [c["name"] for c in metrics["per_class"]][:1] == ["rectangle"]
    pngs = {p.name for p in run.glob("*.png")}
    assert {"confusion_matrix.png", "PR_curve.png", "F1_curve.png"} <= pngs


def test_val_without_data_names_what_to_do(capsys):
    assert main(["val", "model=yolo26n.yaml"]) == 2
    assert "data=" in capsys.readouterr().err
