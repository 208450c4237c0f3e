"""Time the reference implementation's CPU predict, for comparison with benchmarks/predict.py.

Run this with the Python of a SEPARATE environment that has the reference package installed (it is never a
dependency of yolokit and must not be installed into yolokit's environment); this script does not import yolokit:

    /tmp/refvenv/bin/python benchmarks/reference_predict.py --weights yolov8n-random.pt yolo11n-random.pt \
        [--imgsz 640 320] [--batch 1 8] [--runs 20] [--warmup 3] [--repeat 1] [--threads 0] [--conf 0.25] \
        [--out benchmarks/results/reference_predict.json]

Only local weights files are loaded (nothing is downloaded) and the reference's online features are switched off
through its environment variables before it is imported. The input is one synthetic 1080x810 (w x h) BGR image,
built deterministically with the same recipe as benchmarks/predict.py (gradient background plus 12 filled
rectangles, seed 0), or loaded from ``--image`` (.npy). A batch is a list of identical copies of it, passed in one
``predict`` call. Each row reports the medians over ``--runs`` timed calls (after ``--warmup`` untimed ones) of the
reference's own per-image stage times (``results[0].speed``) and of the wall-clock time of the whole call divided
by the batch size. Models with an NMS-free head (YOLO26) are timed both with NMS (``nms`` mode, the default head in
the reference's current releases) and end-to-end (``e2e`` mode, ``nms=False``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STAGES = ("preprocess", "inference", "postprocess")


def quiet_offline_env() -> None:
    """Switch off the reference package's network use and chatter; must run before it is imported."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(tempfile.gettempdir()) / "reference-predict-config"))


def synthetic_image(seed: int = 0):
    """A (810, 1080, 3) uint8 BGR image: colour gradients plus 12 solid rectangles (same recipe as predict.py)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:810, 0:1080]
    image = np.stack([(x * 255 // 1080), (y * 255 // 810), ((x + y) * 255 // 1890)], -1).astype(np.uint8)
    for _ in range(12):
        x1, y1 = int(rng.integers(0, 900)), int(rng.integers(0, 650))
        color = [int(c) for c in rng.integers(0, 256, 3)]
        x2, y2 = x1 + int(rng.integers(40, 180)), y1 + int(rng.integers(40, 160))
        image[y1:y2 + 1, x1:x2 + 1] = color  # inclusive corners, like a filled rectangle drawn by OpenCV
    return image


def write_results(out: str | Path, meta: dict, rows: list[dict], args: argparse.Namespace) -> Path:
    """Write ``{"meta", "rows"}`` JSON with the machine facts both benchmark scripts record, and say where."""
    import torch

    common = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
              "python": sys.version.split()[0], "runs": args.runs, "warmup": args.warmup}
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": {**common, **meta}, "rows": rows}, indent=2))
    print(f"wrote {path}")
    return path


def modes_for(model) -> list[tuple[str, dict]]:
    """Modes and their predict kwargs: 'nms' always, plus 'e2e' (nms=False) when the head has an NMS-free branch.

    The reference keeps predict arguments from one call to the next, so 'nms' passes nms=None (its default,
    NMS) explicitly to undo an earlier nms=False.
    """
    head = model.model.model[-1]
    has_one2one = hasattr(head, "one2one_cv2") or bool(getattr(head, "end2end", False))
    return [("nms", {"nms": None}), ("e2e", {"nms": False})] if has_one2one else [("nms", {})]


def time_calls(model, images: list, kwargs: dict, args: argparse.Namespace) -> dict:
    """One measurement: ``--warmup`` untimed calls, then the medians over ``--runs`` timed calls."""
    import torch

    for _ in range(args.warmup):
        model.predict(images, **kwargs)
    if args.threads:  # after warmup: the reference resets torch's thread count whenever it sets up its predictor
        torch.set_num_threads(args.threads)
    walls, stages = [], []
    for _ in range(args.runs):
        start = time.perf_counter()
        results = model.predict(images, **kwargs)
        walls.append((time.perf_counter() - start) * 1000 / len(images))
        stages.append(dict(results[0].speed))
    row = {stage: statistics.median(s[stage] for s in stages) for stage in STAGES}
    row.update(e2e=statistics.median(walls), e2e_min=min(walls), boxes=len(results[0].boxes),
               threads=torch.get_num_threads(), input_hw=list(results[0].orig_shape))
    return row


def measure(model, image, imgsz: int, batch: int, extra: dict, args: argparse.Namespace) -> dict:
    """Per-image stage times and end-to-end ms of ``model.predict`` on ``batch`` copies of ``image``.

    The measurement is repeated ``--repeat`` times and the repeat with the lowest end-to-end median is kept (the
    least disturbed by other processes); every repeat's median is listed under ``e2e_medians``.
    """
    kwargs = dict(imgsz=imgsz, conf=args.conf, iou=args.iou, max_det=args.max_det, device="cpu",
                  verbose=False, save=False, **extra)
    repeats = [time_calls(model, [image] * batch, kwargs, args) for _ in range(max(args.repeat, 1))]
    row = min(repeats, key=lambda r: r["e2e"])
    row.update(images_per_s=1000 / row["e2e"], e2e_medians=[r["e2e"] for r in repeats])
    return row


def print_table(rows: list[dict], title: str, columns: list[tuple]) -> None:
    """Print ``title`` and a fixed-width table (shared by the benchmark scripts).

    ``columns``: ``(header, width, format, value of a row)``; an empty format is left-aligned text, any other
    (``"d"``, ``".1f"``...) a right-aligned number; a value of None prints ``-``.
    """
    def cell(text: Any, width: int, fmt: str) -> str:
        if text is None:
            return f"{'-':>{width}}"
        return f"{text:<{width}}" if not fmt else f"{text:>{width}{fmt}}"

    print(f"\n{title}")
    header = " ".join(f"{label:<{width}}" if not fmt else f"{label:>{width}}" for label, width, fmt, _ in columns)
    print(header)
    print("-" * len(header))
    for row in rows:
        print(" ".join(cell(value(row), width, fmt) for _, width, fmt, value in columns))


COLUMNS = [
    ("model", 16, "", lambda r: r["model"]), ("mode", 5, "", lambda r: r["mode"]),
    ("imgsz", 5, "d", lambda r: r["imgsz"]), ("batch", 5, "d", lambda r: r["batch"]),
    ("pre ms", 8, ".1f", lambda r: r["preprocess"]), ("infer ms", 9, ".1f", lambda r: r["inference"]),
    ("post ms", 8, ".1f", lambda r: r["postprocess"]), ("e2e ms", 8, ".1f", lambda r: r["e2e"]),
    ("img/s", 7, ".2f", lambda r: r["images_per_s"]), ("boxes", 5, "d", lambda r: r["boxes"]),
    ("thr", 3, "d", lambda r: r["threads"]),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", nargs="+", required=True, help="local .pt files of the reference (no download)")
    parser.add_argument("--imgsz", nargs="+", type=int, default=[640], help="inference sizes to time")
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 8], help="batch sizes to time")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=1,
                        help="repeat each measurement and keep the lowest median (for a machine shared with others)")
    parser.add_argument("--conf", type=float, default=0.25)
    parser.add_argument("--iou", type=float, default=0.7)
    parser.add_argument("--max-det", type=int, default=300)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads for the timed runs (0: the reference's own choice, which it sets itself)")
    parser.add_argument("--modes", nargs="+", choices=["nms", "e2e"], default=["nms", "e2e"],
                        help="which heads to time (e2e only applies to models with an NMS-free head)")
    parser.add_argument("--image", default="", help="a .npy (H, W, 3) uint8 BGR image instead of the synthetic one")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "reference_predict.json"))
    parser.add_argument("--serve", action="store_true",
                        help="worker mode for paired_reference.py: time one call per JSON request on stdin")
    return parser.parse_args(argv)


def serve(args: argparse.Namespace) -> int:
    """Worker mode for benchmarks/paired_reference.py: one timed ``predict`` per request line, one reply line.

    Request (JSON on stdin): ``{"model": stem, "mode": "nms"|"e2e", "batch": n, "imgsz": 640}``; reply (JSON on
    stdout): ``{"e2e": ms per image, "preprocess"|"inference"|"postprocess": ms, "boxes": n, "threads": t}``.
    Models load once, before the ``ready`` line; nothing else is printed on stdout.
    """
    quiet_offline_env()
    import numpy as np
    import torch
    from ultralytics import YOLO, settings

    settings.update({"sync": False})
    image = np.load(args.image) if args.image else synthetic_image()
    models = {Path(path).stem: YOLO(path) for path in args.weights}
    print(json.dumps({"ready": True, "reference_version": __import__("ultralytics").__version__,
                      "torch": torch.__version__}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        model = models[request["model"]]
        extra = dict(modes_for(model))[request["mode"]]
        kwargs = dict(imgsz=request.get("imgsz", 640), conf=args.conf, iou=args.iou, max_det=args.max_det,
                      device="cpu", verbose=False, save=False, **extra)
        if args.threads:
            torch.set_num_threads(args.threads)
        images = [image] * int(request["batch"])
        start = time.perf_counter()
        results = model.predict(images, **kwargs)
        reply = {"e2e": (time.perf_counter() - start) * 1000 / len(images), "boxes": len(results[0].boxes),
                 "threads": torch.get_num_threads(), **{stage: results[0].speed[stage] for stage in STAGES}}
        print(json.dumps(reply), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [w for w in args.weights if not Path(w).is_file()]
    if missing:
        print(f"error: weights file(s) not found: {missing}; pass local .pt files (nothing is downloaded)")
        return 2
    if args.serve:
        return serve(args)
    load_start = list(os.getloadavg())
    quiet_offline_env()
    import numpy as np
    import torch
    import ultralytics
    from ultralytics import YOLO, settings

    settings.update({"sync": False})  # written under YOLO_CONFIG_DIR (a temporary folder), never the user's
    image = np.load(args.image) if args.image else synthetic_image()
    rows = []
    for path in args.weights:
        model = YOLO(path)
        for mode, extra in modes_for(model):
            if mode not in args.modes:
                continue
            for imgsz in args.imgsz:
                for batch in args.batch:
                    row = measure(model, image, imgsz, batch, extra, args)
                    row.update(model=Path(path).stem, mode=mode, imgsz=imgsz, batch=batch)
                    rows.append(row)
                    print(f"  {row['model']} {mode} imgsz {imgsz} batch {batch}: {row['e2e']:.1f} ms/img", flush=True)
    print_table(rows, f"reference predict ({ultralytics.__version__}), 1080x810 input, torch {torch.__version__}, "
                      f"threads {args.threads or 'reference default'}, conf {args.conf}, median of {args.runs}"
                      + (f", best of {args.repeat} repeats" if args.repeat > 1 else ""), COLUMNS)
    meta = {"reference": "ultralytics", "reference_version": ultralytics.__version__, "numpy": np.__version__,
            "threads_arg": args.threads, "imgsz": args.imgsz, "repeat": args.repeat, "conf": args.conf,
            "iou": args.iou, "max_det": args.max_det, "input_hw": list(image.shape[:2]),
            "image_md5": hashlib.md5(image.tobytes()).hexdigest(), "load_avg_start": load_start,
            "load_avg_end": list(os.getloadavg()), "weights": [str(Path(w).resolve()) for w in args.weights]}
    write_results(args.out, meta, rows, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
