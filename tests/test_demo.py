"""`make demo` / `yolokit demo`: the whole walk runs offline and the exported ONNX model scores like the weights."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import yolokit
from yolokit.demo import run_demo

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.mark.slow
def test_demo_walks_a_model_through_its_life(tmp_path):
    pytest.importorskip("onnxruntime")
    summary = run_demo(tmp_path / "demo", weights=str(FIXTURES / "yolo11-tiny-shapes.pt"))
    assert summary["images_predicted"] == 8 and summary["boxes"] > 0
    assert summary["mAP50-95"] > 0.2  # the reference-trained fixture on its own kind of images
    assert abs(summary["onnx mAP50-95"] - summary["mAP50-95"]) <= 1e-3
    for produced in ("weights/model.safetensors", "weights/model.pt", "weights/model-fp16.safetensors",
                     "weights/model.onnx", "val/metrics.json", "val-onnx/metrics.json"):
        assert (tmp_path / "demo" / produced).is_file(), produced
    assert len(list((tmp_path / "demo" / "predict").glob("*.jpg"))) == 8


def _python_m_yolokit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "yolokit", *args], capture_output=True, text=True, timeout=60)


def test_python_m_yolokit_runs_the_cli():
    done = _python_m_yolokit("version")
    assert done.returncode == 0 and done.stdout.strip() == yolokit.__version__


def test_python_m_yolokit_demo_refuses_an_unknown_key_before_any_work(tmp_path):
    done = _python_m_yolokit("demo", f"out={tmp_path / 'demo'}", "weigths=x.pt")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "weigths" in done.stderr and "weights" in done.stderr
    assert not (tmp_path / "demo").exists()
