"""The format table: text layout, JSON rows, the CLI's key check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_format_table_layout():
    from yolokit.deploy.benchmark import format_table

    rows = [{"format": "pytorch-fp32", "size_mb": 9.6, "latency_ms": 20.0, "map50_95": 0.5, "map50": 0.7,
             "drop_points": 0.0, "note": "eager fused"},
            {"format": "onnx-int8", "size_mb": 3.0, "latency_ms": 6.25, "map50_95": 0.495, "map50": None,
             "drop_points": 0.5, "note": "form qdq-full"}]
    lines = format_table(rows).splitlines()
    assert lines[0].split() == ["format", "size", "MB", "latency", "ms", "mAP50-95", "mAP50", "drop", "note"]
    assert lines[1].split() == ["pytorch-fp32", "9.60", "20.00", "0.5000", "0.7000", "0.00", "eager", "fused"]
    assert lines[2].split() == ["onnx-int8", "3.00", "6.25", "0.4950", "-", "0.50", "form", "qdq-full"]


def test_cli_benchmark_checks_keys(capsys):
    from yolokit.cli import main

    assert main(["benchmark", "model=x.pt", "imgsize=320"]) == 2
    assert "unknown benchmark setting 'imgsize'" in capsys.readouterr().err
    assert main(["benchmark", "imgsz=320"]) == 2
    assert "benchmark needs model=PATH" in capsys.readouterr().err


@pytest.mark.slow
def test_benchmark_rows_without_data(tmp_path):
    from yolokit import YOLO

    rows = YOLO(FIXTURES / "yolov8-tiny-shapes.pt").benchmark(imgsz=64, rounds=3, out=str(tmp_path),
                                                              rows=("pytorch-fp32", "onnx-fp32", "torchscript-fp32"))
    assert [r["format"] for r in rows] == ["pytorch-fp32", "onnx-fp32", "torchscript-fp32"]
    assert all(r["size_mb"] > 0.5 and r["latency_ms"] > 0 and r["map50_95"] is None for r in rows)
    assert json.loads((tmp_path / "benchmark.json").read_text()) == rows
