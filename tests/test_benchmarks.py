"""The benchmark scripts run (smoke test on a tiny model; speed itself is never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_predict_benchmark_writes_a_table_and_json(tmp_path):
    out = tmp_path / "predict.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "predict.py"), "--weights",
               str(ROOT / "tests" / "fixtures" / "yolo26-tiny-shapes.pt"), "--imgsz", "64", "--batch-sizes", "1", "2",
               "--runs", "2", "--warmup", "1", "--engine", "channels_last", "onnxruntime", "--reference-json", "",
               "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    # 2 heads (YOLO26: NMS and NMS-free) x 2 batch sizes x 2 engines, every stage timed
    assert len(rows) == 8 and {r["engine"] for r in rows} == {"channels_last", "onnxruntime"}
    assert all(r["e2e"] > 0 and r["inference"] > 0 for r in rows)
    header = next(line for line in done.stdout.splitlines() if line.startswith("model"))
    assert header.split()[:4] == ["model", "mode", "engine", "batch"] and header.rstrip().endswith("x ref")
    assert "yolo26-tiny-shapes e2e" in done.stdout
