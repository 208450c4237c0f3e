"""Fine-tuning a YOLOv5 checkpoint vs training the same architecture from random weights (docs/yolov5.md).

    python benchmarks/yolov5_finetune.py --weights ../shared/fixtures/yolov5/yolov5n.pt --epochs 5 --imgsz 320

Makes a synthetic dataset (3 shape classes), measures the mAP50-95 of the transferred model before training (box and
objectness rows from the checkpoint, class rows fresh) and of a random ``yolov5n.yaml`` model, trains both for the
same epochs with yolokit's defaults, prints a table and writes JSON (``benchmarks/results/yolov5_finetune.json``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def _val(model, data: Path, imgsz: int, project: Path, name: str) -> float:
    from yolokit import YOLO

    metrics = YOLO(model.eval()).val(data=str(data), imgsz=imgsz, verbose=False, plots=False, project=str(project),
                                     name=name, exist_ok=True)
    return float(metrics.box.map)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="a YOLOv5 checkpoint, e.g. yolov5n.pt")
    parser.add_argument("--spec", default="yolov5n.yaml", help="the same architecture, for the random start")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--n-train", type=int, default=96)
    parser.add_argument("--n-val", type=int, default=24)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "yolov5_finetune.json"))
    args = parser.parse_args()

    import torch

    from yolokit import YOLO
    from yolokit.data.dataset import load_data_config
    from yolokit.data.synth import make_synthetic_dataset
    from yolokit.models.builder import build_model
    from yolokit.train.transfer import prepare_for_training

    work = Path(tempfile.mkdtemp(prefix="yolov5_finetune_"))
    data = make_synthetic_dataset(work / "synth", n_train=args.n_train, n_val=args.n_val, imgsz=args.imgsz, seed=0)
    names = load_data_config(data).names
    torch.manual_seed(0)
    transferred, _ = prepare_for_training(args.weights, names)
    torch.manual_seed(0)
    scratch = build_model(args.spec, num_classes=len(names))
    scratch.names = dict(names)
    rows = {"pretrained": {"before": _val(transferred, data, args.imgsz, work, "before_pretrained")},
            "random": {"before": _val(scratch, data, args.imgsz, work, "before_random")}}
    common = {"data": str(data), "epochs": args.epochs, "imgsz": args.imgsz, "batch": args.batch, "workers": 0,
              "verbose": False, "plots": False, "project": str(work), "exist_ok": True, "seed": 0}
    for key, source in (("pretrained", args.weights), ("random", args.spec)):
        start = time.perf_counter()
        result = YOLO(source).train(name=key, **common)
        rows[key].update(after=float(result["map"]), map50=float(result["map50"]), seconds=time.perf_counter() - start)
    print(f"{'start':<12} {'mAP50-95 before':>16} {'after':>8} {'mAP50':>8} {'seconds':>8}  ({args.epochs} epochs)")
    for key, row in rows.items():
        print(f"{key:<12} {row['before']:>16.4f} {row['after']:>8.4f} {row['map50']:>8.4f} {row['seconds']:>8.0f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
