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


def _train_benchmark(name: str = "train"):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_benchmark_pairs_rounds_and_skips_the_warmup_epoch():
    """The aggregation of benchmarks/train.py (its --quick run trains for real and takes too long for the suite)."""
    bench = _train_benchmark()

    def run(seconds, rss):  # a worker's result: 2 epochs of 32 images; the first is the warm-up
        return {"side": "x", "epochs": [
            {"seconds": 100.0, "images": 32, "threads": 1, "workers": 2, "rss_peak_mb": 9999.0,
             "pss_tree_peak_mb": 9999.0},
            {"seconds": seconds, "images": 32, "threads": 2, "workers": 0, "rss_peak_mb": rss,
             "pss_tree_peak_mb": rss + 1}]}

    assert bench.timed(run(4.0, 500.0)) == {"images_per_s": 8.0, "threads": 2, "workers": 0, "rss_peak_mb": 500.0,
                                            "pss_tree_peak_mb": 501.0}
    args = bench.parse_args(["--rounds", "3", "--batch", "8"])
    per_side = {"reference": [bench.timed(run(s, 800.0)) for s in (8.0, 16.0, 8.0)],
                "yolokit": [bench.timed(run(s, 400.0)) for s in (4.0, 4.0, 2.0)]}
    row = bench.summarise("yolo26n", 320, per_side, args)
    # per-round ratios 2, 4, 4 (not the ratio of medians, 8 / 4 = 2): the median is 4
    assert row["speedups"] == [2.0, 4.0, 4.0] and row["speedup"] == 4.0
    assert (row["speedup_q25"], row["speedup_q75"]) == (3.0, 4.0)
    assert row["reference"]["images_per_s"] == 4.0 and row["yolokit"]["rss_peak_mb"] == 400.0
    assert (row["batch"], row["rounds"], args.models, args.imgsz) == (8, 3, ["yolov8n", "yolo11n", "yolo26n"],
                                                                      [320, 640])
    sampler = _train_benchmark("train_worker").MemorySampler()
    sampler.reset()
    assert 10 < sampler.rss_mb < 100_000 and sampler.pss_mb > 0
