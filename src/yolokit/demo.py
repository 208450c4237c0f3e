"""``make demo`` / ``yolokit demo [out=demo_out] [--quick]``: the whole life of a model's weights, offline.

1. generate the built-in synthetic dataset A (rectangle, ellipse, triangle) and dataset B (cross, star);
2. build YOLO26n from random weights, print ``info()``, validate it on A (its mAP is near 0: guesses);
3. train it on A and register the best weights as ``demo-a:1``;
4. fine-tune ``demo-a:1`` on B (another class count: ``Transferred X/Y tensors``) and, side by side, train B from
   random weights with the same settings and epochs; register the fine-tune as ``demo-b:1``, a child of ``demo-a:1``;
5. export the fine-tune to ONNX FP32 and INT8 (children ``demo-b:2``, ``demo-b:3``), measure size, latency (paired,
   batch 1) and mAP of the three files, and move the alias ``production`` by :data:`PRODUCTION_RULE`;
6. load ``registry://demo-b@production``, predict on B's first validation images and save the annotated pictures,
   print the lineage tree and the weight diff ``demo-a:1 -> demo-b:1`` (which layers moved most);
7. write ``summary.json`` (every headline number, each read from the run's own files and records) and print the
   summary and the paths of everything written.

Everything goes into ``out`` (a registry of its own in ``out/registry``: never the user's). A folder of an earlier
demo run is replaced; any other non-empty folder is refused. Every mAP is one ``YOLO.val`` run on the dataset's val
split with the same settings, whose ``metrics.json`` the summary points to. Sizes (:data:`FULL`, :data:`QUICK`) were
chosen so the full walk takes about 5 minutes on 2 idle CPU cores with the library's thread defaults (docs/demo.md).
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from yolokit.demo_report import format_rows, format_summary, prediction_sheet
from yolokit.errors import ConfigError

__all__ = ["DemoSizes", "FULL", "QUICK", "FRESH_SPEC", "CLASSES_B", "PRODUCTION_RULE", "choose_production",
           "format_summary", "run_demo"]

logger = logging.getLogger(__name__)
FRESH_SPEC = "yolo26n.yaml"  # the model built from random weights
CLASSES_B = ("cross", "star")
MARKER = ".yolokit-demo"  # marks a folder this demo wrote (and may replace)
PRODUCTION_POINTS = 1.0
PRODUCTION_RULE = (f"the smallest file whose mAP50-95 is within {PRODUCTION_POINTS:g} point (0.01) of the best "
                   "of the candidates")


@dataclass(frozen=True)
class DemoSizes:
    """Dataset, training and measurement sizes of one demo walk."""

    imgsz: int  # image side (generated, trained, validated, exported)
    train_a: int  # training images of dataset A
    train_b: int  # training images of dataset B
    val: int  # validation images of each dataset
    epochs_a: int
    epochs_b: int  # fine-tune and from-scratch runs alike
    batch: int
    lr0: float  # AdamW learning rate (short runs need more than the auto rule's 0.0014)
    calib: int  # INT8 calibration images (from B's train split)
    predict: int  # images predicted and saved in step 6
    latency_rounds: int


FULL = DemoSizes(imgsz=160, train_a=160, train_b=96, val=32, epochs_a=24, epochs_b=8, batch=8, lr0=0.004,
                 calib=64, predict=4, latency_rounds=20)
QUICK = DemoSizes(imgsz=64, train_a=8, train_b=8, val=4, epochs_a=1, epochs_b=1, batch=8, lr0=0.004,
                  calib=4, predict=2, latency_rounds=3)


def run_demo(out: str | Path = "demo_out", quick: bool = False) -> dict[str, Any]:
    """Run the seven steps (module docstring) into ``out`` and return the summary (also ``out/summary.json``)."""
    from yolokit.utils.log import verbosity

    walk = _Walk(_prepare_out(Path(out)), QUICK if quick else FULL, quick)
    with verbosity(True):
        walk.datasets()
        walk.random_model()
        walk.train_a()
        walk.fine_tune_b()
        walk.export_b()
        walk.deploy()
        return walk.finish()


def _prepare_out(out: Path) -> Path:
    """``out`` emptied of an earlier demo run; any other non-empty folder is refused, and so is a folder that cannot
    be written (a parent that is a file, read-only, ``/proc``: one ``OutputPathError`` line before any work)."""
    from yolokit.utils.io import check_output_dir

    check_output_dir(out, "demo output folder", "pass another out=FOLDER")
    if any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise ConfigError(f"demo output folder {out} exists and was not written by the demo: pass another "
                              "out=FOLDER (or remove it)")
        shutil.rmtree(out)
        out.mkdir()
    (out / MARKER).write_text("written by yolokit demo; the next demo run into this folder replaces it\n")
    return out


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _load_average() -> str:
    """The machine's 1/5/15-minute load averages as text (``"0.12 0.30 0.41"``): how busy the cores were."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@contextmanager
def _registry_env(path: Path):
    """``YOLOKIT_REGISTRY=path`` for the block (``YOLO("registry://...")`` reads it), restored afterwards."""
    saved = os.environ.get("YOLOKIT_REGISTRY")
    os.environ["YOLOKIT_REGISTRY"] = str(path)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("YOLOKIT_REGISTRY", None)
        else:
            os.environ["YOLOKIT_REGISTRY"] = saved


class _TransferLog(logging.Handler):
    """Keeps the ``Transferred X/Y tensors`` figures the trainer logs while preparing a fine-tune."""

    def __init__(self) -> None:
        super().__init__()
        self.found: tuple[int, int] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("Transferred %d/%d tensors"):
            self.found = (int(record.args[0]), int(record.args[1]))


def choose_production(rows: list[dict[str, Any]], points: float = PRODUCTION_POINTS) -> dict[str, Any]:
    """The row :data:`PRODUCTION_RULE` picks from ``rows`` (each with ``map`` and ``size_bytes``): among the rows
    within ``points`` (x 0.01) mAP50-95 of the best, the smallest file; equal sizes: the better mAP, then the first.

    >>> choose_production([{"v": 1, "map": 0.50, "size_bytes": 9}, {"v": 2, "map": 0.495, "size_bytes": 3},
    ...                    {"v": 3, "map": 0.48, "size_bytes": 2}])["v"]
    2
    """
    if not rows:
        raise ConfigError("choose_production needs at least one candidate row")
    best = max(row["map"] for row in rows)
    eligible = [row for row in rows if row["map"] >= best - points / 100 - 1e-12]
    return min(eligible, key=lambda row: (row["size_bytes"], -row["map"]))


class _Walk:
    """The demo's state from step to step; each method is one step and records its numbers in ``summary``."""

    def __init__(self, out: Path, sizes: DemoSizes, quick: bool) -> None:
        from yolokit.registry import Registry

        self.out, self.sizes = out.absolute(), sizes
        self.registry_path = self.out / "registry"
        self.registry = Registry(self.registry_path)
        self.summary: dict[str, Any] = {"quick": quick, "sizes": asdict(sizes), "out": str(self.out),
                                        "registry": str(self.registry_path), "production_rule": PRODUCTION_RULE}
        self.started = self.last = (time.perf_counter(), _cpu_seconds())
        self.load_start = _load_average()
        self.data: dict[str, Path] = {}

    def _step(self, number: int, text: str) -> None:
        """Record and log the wall and CPU seconds the previous step took, then log this step's title."""
        now = (time.perf_counter(), _cpu_seconds())
        if number > 1:
            took = {"wall": round(now[0] - self.last[0], 1), "cpu": round(now[1] - self.last[1], 1)}
            self.summary.setdefault("step_seconds", {})[str(number - 1)] = took
            logger.info("[%d/7] done: %.1f s wall, %.1f s CPU", number - 1, took["wall"], took["cpu"])
        self.last = now
        logger.info("\n[%d/7] %s", number, text)

    def _train_args(self, epochs: int) -> dict[str, Any]:
        s = self.sizes
        return {"epochs": epochs, "imgsz": s.imgsz, "batch": s.batch, "nbs": s.batch, "optimizer": "AdamW",
                "lr0": s.lr0, "warmup_epochs": 1, "close_mosaic": max(1, epochs // 2), "workers": 0, "seed": 0,
                "project": str(self.out / "runs"), "exist_ok": True, "plots": not self.summary["quick"]}

    def _val(self, model: Any, dataset: str, name: str) -> dict[str, Any]:
        """One val run on ``dataset``'s val split -> ``{map, map50, metrics}`` (``metrics``: its metrics.json)."""
        metrics = model.val(data=str(self.data[dataset]), imgsz=self.sizes.imgsz, batch=self.sizes.batch,
                            project=str(self.out / "val"), name=name, exist_ok=True, plots=False, verbose=False)
        path = Path(metrics.save_dir) / "metrics.json"
        logger.info("val %s on %s: mAP50-95 %.4f, mAP50 %.4f (%s)", name, dataset, metrics.map, metrics.map50, path)
        return {"map": metrics.map, "map50": metrics.map50, "metrics": str(path)}

    # --- steps ------------------------------------------------------------------------------------------------
    def datasets(self) -> None:
        from yolokit.data.synth import DEFAULT_CLASSES, make_synthetic_dataset

        s = self.sizes
        self._step(1, "synthetic datasets A (rectangle, ellipse, triangle) and B (cross, star)")
        for key, classes, n_train, seed in (("A", DEFAULT_CLASSES, s.train_a, 0), ("B", CLASSES_B, s.train_b, 1)):
            self.data[key] = make_synthetic_dataset(self.out / "data" / key, n_train=n_train, n_val=s.val,
                                                    imgsz=s.imgsz, seed=seed, classes=classes)
            self.summary.setdefault("datasets", {})[key] = {"data": str(self.data[key]), "classes": list(classes),
                                                            "train": n_train, "val": s.val}

    def random_model(self) -> None:
        from yolokit.data.dataset import load_data_config
        from yolokit.model import YOLO

        self._step(2, f"{FRESH_SPEC} from random weights: info(), and its mAP on A (its boxes are guesses)")
        names = load_data_config(self.data["A"]).names
        model = YOLO(FRESH_SPEC, num_classes=len(names))
        model.model.names = dict(names)
        layers, parameters, gradients, gflops = model.info(imgsz=self.sizes.imgsz)
        self.summary["info"] = {"model": FRESH_SPEC, "layers": layers, "parameters": parameters,
                                "gradients": gradients, "gflops": gflops, "imgsz": self.sizes.imgsz}
        self.summary["random_a"] = self._val(model, "A", "random-a")
        self.random = model

    def train_a(self) -> None:
        self._step(3, f"train on A for {self.sizes.epochs_a} epochs, register the best weights as demo-a:1")
        result = self.random.train(data=str(self.data["A"]), name="train-a", register="demo-a",
                                   registry=str(self.registry_path), **self._train_args(self.sizes.epochs_a))
        version = self.registry.history("demo-a")[-1]
        self.summary["train_a"] = {**self._val(self.random, "A", "trained-a"), "run": result["save_dir"],
                                   "weights": result["weights"], "best_epoch": result["best_epoch"],
                                   "version": version.ref}
        self.trained_a = Path(result["weights"])

    def fine_tune_b(self) -> None:
        from yolokit.data.dataset import load_data_config
        from yolokit.model import YOLO

        epochs = self.sizes.epochs_b
        self._step(4, f"fine-tune demo-a:1 on B, and train B from random weights, {epochs} epochs each")
        tuned, capture = YOLO(self.trained_a), _TransferLog()
        transfer_logger = logging.getLogger("yolokit.train.transfer")
        transfer_logger.addHandler(capture)
        try:
            result = tuned.train(data=str(self.data["B"]), name="finetune-b", register="demo-b",
                                 registry=str(self.registry_path), **self._train_args(epochs))
        finally:
            transfer_logger.removeHandler(capture)
        if capture.found is None:
            raise RuntimeError("the fine-tune logged no 'Transferred X/Y tensors' line: were the weights of "
                               f"{self.trained_a} kept?")
        version = self.registry.history("demo-b")[-1]
        self.summary["fine_tune_b"] = {**self._val(tuned, "B", "finetune-b"), "run": result["save_dir"],
                                       "weights": result["weights"], "transferred": capture.found[0],
                                       "tensors": capture.found[1], "version": version.ref, "parent": version.parent}
        names = load_data_config(self.data["B"]).names
        scratch = YOLO(FRESH_SPEC, num_classes=len(names))
        result = scratch.train(data=str(self.data["B"]), name="scratch-b", **self._train_args(epochs))
        self.summary["scratch_b"] = {**self._val(scratch, "B", "scratch-b"), "run": result["save_dir"],
                                     "weights": result["weights"]}
        ft, sc = self.summary["fine_tune_b"], self.summary["scratch_b"]
        logger.info("B after %d epochs: mAP50-95 %.4f fine-tuned from demo-a:1 (%d/%d tensors transferred), %.4f "
                    "from random weights: the head start of pretrained weights", epochs, ft["map"],
                    ft["transferred"], ft["tensors"], sc["map"])
        self.tuned = tuned

    def export_b(self) -> None:
        from yolokit.model import YOLO

        s, folder = self.sizes, self.out / "export"
        self._step(5, "export demo-b:1 to ONNX FP32 and INT8, register both, measure, choose production")
        common = {"format": "onnx", "imgsz": s.imgsz, "data": str(self.data["B"]), "register": "demo-b",
                  "registry": str(self.registry_path)}
        files = [("pytorch-fp32", Path(self.summary["fine_tune_b"]["weights"])),
                 ("onnx-fp32", self.tuned.export(file=str(folder / "demo-b.onnx"), **common)),
                 ("onnx-int8", self.tuned.export(file=str(folder / "demo-b_int8.onnx"), int8=True, force=True,
                                                 calib_images=s.calib, **common))]
        latency = self._latency([path for _, path in files])
        rows = []
        for (fmt, path), ms in zip(files, latency, strict=True):
            version = self._version_of(path)
            measured = self.summary["fine_tune_b"] if fmt == "pytorch-fp32" else self._val(YOLO(path), "B", f"{fmt}-b")
            rows.append({"format": fmt, "version": version.ref, "file": str(path), "size_bytes": path.stat().st_size,
                         "latency_ms": ms, "map": measured["map"], "map50": measured["map50"],
                         "metrics": measured["metrics"], "parent": version.parent, "relation": version.relation})
        chosen = choose_production(rows)
        self.registry.alias(chosen["version"], "production")
        logger.info("\n%s", "\n".join(format_rows(rows, chosen["version"])))
        logger.info("production rule: %s -> demo-b@production = %s (%s)", PRODUCTION_RULE, chosen["version"],
                    chosen["format"])
        self.summary["formats"] = rows
        self.summary["production"] = {"version": chosen["version"], "format": chosen["format"]}

    def _version_of(self, path: Path) -> Any:
        from yolokit.utils.io import sha256_file

        return next(v for v in self.registry.find_sha256(sha256_file(path)) if v.name == "demo-b")

    def _latency(self, paths: list[Path]) -> list[float]:
        """Median ms of one batch-1 forward pass of each file, all timed together, interleaved (paired)."""
        import torch

        from yolokit.backends.onnxruntime_backend import OnnxRuntimeBackend
        from yolokit.backends.torch_backend import TorchBackend
        from yolokit.export.latency import paired_latency

        backends = [TorchBackend(self.tuned.model) if p.suffix != ".onnx" else OnnxRuntimeBackend(p) for p in paths]
        x = torch.rand(1, 3, self.sizes.imgsz, self.sizes.imgsz, generator=torch.Generator().manual_seed(0))
        runners = {str(i): (lambda b=b: b(x)) for i, b in enumerate(backends)}
        stats = paired_latency(runners, rounds=self.sizes.latency_rounds, warmup=2)
        return [round(stats[str(i)].median_ms, 3) for i in range(len(paths))]

    def deploy(self) -> None:
        from yolokit.model import YOLO
        from yolokit.registry.report import format_diff, format_lineage

        self._step(6, "load registry://demo-b@production, predict and save pictures; lineage and weight diff")
        with _registry_env(self.registry_path):
            production = YOLO("registry://demo-b@production")
        images = sorted((self.data["B"].parent / "images" / "val").glob("*.jpg"))[: self.sizes.predict]
        results = production.predict([str(p) for p in images], imgsz=self.sizes.imgsz, save=True,
                                     project=str(self.out), name="predict", exist_ok=True)
        saved = sorted(str(p) for p in (self.out / "predict").glob("*.jpg"))
        self.summary["predict"] = {"model": "registry://demo-b@production", "version": production.registry_version.ref,
                                   "images": len(results), "boxes": sum(len(r.boxes) for r in results),
                                   "saved": saved,
                                   "picture": str(prediction_sheet(results, self.out / "demo-prediction.png"))}
        lineage = self.registry.lineage("demo-b:1")
        logger.info("\nLineage of demo-b:1\n%s", format_lineage(lineage))
        self.summary["lineage"] = [{"version": v.ref, "parent": v.parent, "relation": v.relation,
                                    "aliases": list(v.aliases)}
                                   for v in [*lineage.ancestors, lineage.version, *_descendants(lineage)]]
        diff = self.registry.diff("demo-a:1", "demo-b:1")
        logger.info("\n%s", format_diff(diff))
        layers = sorted((e for e in diff["weights"]["layers"] if e["rel_l2"] is not None), key=lambda e: -e["rel_l2"])
        self.summary["diff"] = {"a": "demo-a:1", "b": "demo-b:1", "rel_l2": diff["weights"]["rel_l2"],
                                "changed": diff["weights"]["changed"], "tensors": diff["weights"]["tensors"],
                                "top_layers": [{"layer": e["layer"], "rel_l2": e["rel_l2"]} for e in layers[:3]]}

    def finish(self) -> dict[str, Any]:
        from yolokit.utils.io import atomic_write_json

        self._step(7, "summary")
        wall, cpu = time.perf_counter() - self.started[0], _cpu_seconds() - self.started[1]
        self.summary["time"] = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                                "load_average": _load_average(), "load_average_start": self.load_start}
        self.summary["paths"] = _paths(self.out)
        atomic_write_json(self.out / "summary.json", self.summary)
        logger.info("%s", format_summary(self.summary))
        return self.summary


def _descendants(lineage: Any) -> list[Any]:
    """The versions below ``lineage.version``, depth first, in registration order."""
    found, stack = [], list(reversed(lineage.children.get(lineage.version.id, [])))
    while stack:
        version = stack.pop()
        found.append(version)
        stack.extend(reversed(lineage.children.get(version.id, [])))
    return found


def _paths(out: Path) -> dict[str, str]:
    """What the demo wrote, by kind (``out``-relative folders and files)."""
    kinds = {"datasets": "data", "training runs": "runs", "validation runs": "val", "exported files": "export",
             "registry": "registry", "predictions": "predict", "picture": "demo-prediction.png",
             "summary": "summary.json"}
    return {kind: str(out / name) for kind, name in kinds.items()}
