"""INT8 vs FP32 ONNX on real weights: size ratio, latency ratio (paired, batch 1), mAP50-95 drop; optionally the
format table and the reference implementation's own INT8 export of the same weights.

    .venv/bin/python benchmarks/int8.py --weights best.pt --data data.yaml --imgsz 320 [--calib-images 300]
        [--method minmax] [--table] [--reference-python /path/to/other-venv/bin/python] [--rounds 60]

yolokit's figures come from its INT8 export itself (it measures FP32 and every quantized form side by side, see
``docs/export.md``). The reference's INT8 and FP32 files are exported by the reference in a scratch folder (its own
environment, outside this repository), timed here with the same ONNX Runtime settings and paired calls, and
validated by the reference. Writes ``benchmarks/results/int8.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_SCRIPT = """
import json, sys
from ultralytics import YOLO
weights, data, imgsz = sys.argv[1], sys.argv[2], int(sys.argv[3])
import os, shutil
fp32 = os.path.abspath(shutil.copy(YOLO(weights).export(format="onnx", imgsz=imgsz, dynamic=False), "fp32_kept.onnx"))
int8 = YOLO(weights).export(format="onnx", imgsz=imgsz, int8=True, data=data)  # replaces <stem>.onnx on the way
out = {"fp32": fp32, "int8": int8}
for key in ("fp32", "int8"):
    m = YOLO(out[key], task="detect").val(data=data, imgsz=imgsz, batch=1, plots=False, verbose=False)
    out[key + "_map50_95"], out[key + "_map50"] = float(m.box.map), float(m.box.map50)
print("RESULT " + json.dumps(out))
"""


def yolokit_int8(weights: str, data: str, imgsz: int, calib_images: int, method: str, folder: Path) -> dict:
    from yolokit import YOLO
    from yolokit.export.onnx import read_onnx_metadata

    path = YOLO(weights).export(format="onnx", int8=True, data=data, imgsz=imgsz, dynamic=False,
                                calib_images=calib_images, calib_method=method, file=str(folder / "int8.onnx"))
    quant = read_onnx_metadata(path)["quantization"]
    fp32, int8 = quant["fp32"], quant["int8"]
    return {"size_ratio": fp32["size_mb"] / int8["size_mb"], "latency_ratio": int8["ratio_vs_fp32"],
            "map_drop_points": quant["drop_points"], "fp32": fp32, "int8": int8, "chosen": quant["chosen"],
            "candidates": quant["candidates"], "kept_float": quant["kept_float"]}


def reference_int8(python: str, weights: str, data: str, imgsz: int, rounds: int, folder: Path) -> dict:
    from yolokit.export.latency import latency_ratio, ort_runner, ort_session, paired_latency

    local = folder / Path(weights).name
    local.write_bytes(Path(weights).read_bytes())
    done = subprocess.run([python, "-c", REFERENCE_SCRIPT, str(local), data, str(imgsz)], cwd=folder,
                          capture_output=True, text=True, timeout=3600)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"reference export failed: {done.stderr[-2000:]}")
    out = json.loads(line[len("RESULT "):])
    import numpy as np

    x = np.random.default_rng(0).random((1, 3, imgsz, imgsz), dtype=np.float32)
    runners = {key: ort_runner(ort_session(out[key]), x) for key in ("fp32", "int8")}
    stats = paired_latency(runners, rounds=rounds, warmup=5)
    sizes = {key: Path(out[key]).stat().st_size / 1e6 for key in ("fp32", "int8")}
    return {"size_ratio": sizes["fp32"] / sizes["int8"], "latency_ratio": latency_ratio(stats, "int8", "fp32"),
            "map_drop_points": 100 * (out["fp32_map50_95"] - out["int8_map50_95"]),
            "fp32": {"size_mb": sizes["fp32"], "latency_ms": stats["fp32"].median_ms,
                     "map50_95": out["fp32_map50_95"]},
            "int8": {"size_mb": sizes["int8"], "latency_ms": stats["int8"].median_ms,
                     "map50_95": out["int8_map50_95"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", nargs="+", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--calib-images", type=int, default=300)
    parser.add_argument("--method", default="minmax")
    parser.add_argument("--table", action="store_true", help="also the format table (YOLO.benchmark)")
    parser.add_argument("--reference-python", default="")
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("root").setLevel(logging.ERROR)  # ONNX Runtime's quantizer logs through the root logger
    results = {}
    for weights in args.weights:
        with tempfile.TemporaryDirectory() as tmp:
            entry = {"yolokit": yolokit_int8(weights, args.data, args.imgsz, args.calib_images, args.method,
                                             Path(tmp))}
            if args.table:
                from yolokit import YOLO

                entry["table"] = YOLO(weights).benchmark(args.data, imgsz=args.imgsz, rounds=args.rounds,
                                                         out=str(Path(tmp) / "table"),
                                                         int8={"calib_images": args.calib_images})
            if args.reference_python:
                entry["reference"] = reference_int8(args.reference_python, weights, args.data, args.imgsz,
                                                    args.rounds, Path(tmp))
        results[weights] = entry
        for side in ("yolokit", "reference"):
            if side in entry:
                e = entry[side]
                print(f"{Path(weights).name} {side:9s}: {e['size_ratio']:.2f}x smaller, latency ratio "
                      f"{e['latency_ratio']:.3f}, mAP50-95 drop {e['map_drop_points']:.2f} points "
                      f"(FP32 {e['fp32']['map50_95']:.4f} -> INT8 {e['int8']['map50_95']:.4f})")
    out = ROOT / "benchmarks" / "results" / "int8.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str))
    print(f"written {out}")


if __name__ == "__main__":
    sys.exit(main())
