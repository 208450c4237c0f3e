"""`make demo` / `yolokit demo --quick`: every step leaves its artefacts, and every number it prints is one it wrote.

The quick walk runs once (as `make demo` runs it: `python -m yolokit demo`, in a subprocess, with the user's
registry pointed at a folder that must stay absent); the tests then compare ``summary.json`` with what is on disk:
the val runs' ``metrics.json``, the files' sizes and hashes, the registry's records, an independent transfer and
weight diff, and the printed summary with :func:`yolokit.demo_report.format_summary` of the JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import yolokit
from yolokit.demo import CLASSES_B, FRESH_SPEC, MARKER, QUICK, choose_production
from yolokit.demo_report import format_summary
from yolokit.errors import ConfigError


def _python_m_yolokit(*args: str, env: dict[str, str] | None = None, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "yolokit", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    """(out folder, summary dict, stdout, the user's registry path) of one `yolokit demo --quick` run."""
    root = tmp_path_factory.mktemp("demo")
    home_registry = root / "home-registry"
    # One torch / ONNX Runtime thread: the suite shares 2 cores with other work, where a second thread mostly
    # waits; what is checked does not depend on the count.
    env = {**os.environ, "YOLOKIT_REGISTRY": str(home_registry), "OMP_NUM_THREADS": "1"}
    done = _python_m_yolokit("demo", f"out={root / 'out'}", "--quick", env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((root / "out" / "summary.json").read_text())
    return root / "out", summary, done.stdout, home_registry


def _metrics(path: str) -> dict:
    return json.loads(Path(path).read_text())["metrics"]


@pytest.mark.slow
def test_quick_demo_prints_the_summary_it_wrote_and_leaves_the_users_registry_alone(quick_demo):
    out, summary, stdout, home_registry = quick_demo
    assert stdout.rstrip().endswith(format_summary(summary))  # the printed numbers are the JSON's
    for step in range(1, 8):
        assert f"[{step}/7] " in stdout
    ft = summary["fine_tune_b"]
    assert f"Transferred {ft['transferred']}/{ft['tensors']} tensors" in stdout
    assert "Epoch" in stdout and "mAP50-95" in stdout  # the epoch table
    assert summary["quick"] is True and summary["sizes"]["epochs_a"] == QUICK.epochs_a
    assert not home_registry.exists()
    assert (out / MARKER).is_file() and summary["time"]["wall_s"] > 0 and summary["time"]["cpu_s"] > 0
    for path in summary["paths"].values():
        assert Path(path).exists(), path


@pytest.mark.slow
def test_quick_demo_prints_each_steps_seconds_and_the_measured_numbers_where_they_happen(quick_demo):
    from yolokit.registry import Registry
    from yolokit.registry.report import format_diff, format_lineage

    out, summary, stdout, _ = quick_demo
    steps = summary["step_seconds"]
    assert sorted(steps) == [str(k) for k in range(1, 7)]
    for k, took in steps.items():  # each step ends with its own seconds, the ones summary.json keeps
        assert f"[{k}/7] done: {took['wall']:.1f} s wall, {took['cpu']:.1f} s CPU" in stdout
        assert took["wall"] >= 0 and took["cpu"] >= 0
    assert sum(took["wall"] for took in steps.values()) <= summary["time"]["wall_s"] + 0.1 * len(steps)
    for key in ("load_average_start", "load_average"):
        assert len(summary["time"][key].split()) == 3 and all(float(x) >= 0 for x in summary["time"][key].split())
    for name, run in (("random-a", summary["random_a"]), ("trained-a", summary["train_a"]),
                      ("finetune-b", summary["fine_tune_b"]), ("scratch-b", summary["scratch_b"])):
        assert f"val {name} on {name[-1].upper()}: mAP50-95 {run['map']:.4f}, mAP50 {run['map50']:.4f}" in stdout
    ft, sc = summary["fine_tune_b"], summary["scratch_b"]
    assert (f"mAP50-95 {ft['map']:.4f} fine-tuned from demo-a:1 ({ft['transferred']}/{ft['tensors']} tensors "
            f"transferred), {sc['map']:.4f} from random weights") in stdout
    reg = Registry(out / "registry")  # nothing changes the registry after step 6 prints the tree and the diff
    assert format_lineage(reg.lineage("demo-b:1")) in stdout
    assert format_diff(reg.diff("demo-a:1", "demo-b:1")) in stdout
    assert f"demo-b@production = {summary['production']['version']}" in stdout


@pytest.mark.slow
def test_quick_demo_datasets_and_every_map_come_from_their_val_runs(quick_demo):
    import yaml

    out, summary, _, _ = quick_demo
    for key, classes, n_train in (("A", ["rectangle", "ellipse", "triangle"], QUICK.train_a),
                                  ("B", list(CLASSES_B), QUICK.train_b)):
        data = yaml.safe_load(Path(summary["datasets"][key]["data"]).read_text())
        assert list(data["names"].values()) == classes
        folder = Path(summary["datasets"][key]["data"]).parent / "images"
        assert len(list((folder / "train").glob("*.jpg"))) == n_train
        assert len(list((folder / "val").glob("*.jpg"))) == QUICK.val
    runs = [summary["random_a"], summary["train_a"], summary["fine_tune_b"], summary["scratch_b"],
            *summary["formats"]]
    for run in runs:
        measured = _metrics(run["metrics"])
        assert (run["map"], run["map50"]) == (measured["map"], measured["map50"]), run["metrics"]
    assert len({run["metrics"] for run in runs}) == 6  # random, trained A, fine-tune, scratch, 2 ONNX files
    for key in ("train_a", "fine_tune_b", "scratch_b"):
        run = Path(summary[key]["run"])
        assert (run / "results.csv").is_file() and Path(summary[key]["weights"]).is_file()
        epochs = QUICK.epochs_a if key == "train_a" else QUICK.epochs_b
        assert len((run / "results.csv").read_text().strip().splitlines()) == epochs + 1


@pytest.mark.slow
def test_quick_demo_registry_versions_aliases_and_files(quick_demo):
    from yolokit.registry import Registry
    from yolokit.utils.io import sha256_file

    out, summary, _, _ = quick_demo
    reg = Registry(out / "registry")
    (a1,) = reg.history("demo-a")
    assert a1.ref == summary["train_a"]["version"] == "demo-a:1" and a1.parent is None
    assert a1.sha256 == sha256_file(summary["train_a"]["weights"])
    b = {v.ref: v for v in reg.history("demo-b")}
    assert sorted(b) == ["demo-b:1", "demo-b:2", "demo-b:3"]
    assert (b["demo-b:1"].parent, b["demo-b:1"].relation) == ("demo-a:1", "finetuned")
    assert (b["demo-b:2"].parent, b["demo-b:2"].relation, b["demo-b:2"].precision) == ("demo-b:1", "exported", "fp32")
    assert (b["demo-b:3"].parent, b["demo-b:3"].relation, b["demo-b:3"].precision) == ("demo-b:1", "quantized", "int8")
    rows = summary["formats"]
    assert [r["format"] for r in rows] == ["pytorch-fp32", "onnx-fp32", "onnx-int8"]
    for row in rows:
        version = b[row["version"]]
        assert row["size_bytes"] == Path(row["file"]).stat().st_size == version.file_size
        assert sha256_file(row["file"]) == version.sha256
        assert (row["parent"], row["relation"]) == (version.parent, version.relation)
        assert row["latency_ms"] > 0
    assert rows[0]["file"] == summary["fine_tune_b"]["weights"]
    production = reg.resolve("demo-b@production").ref
    assert production == summary["production"]["version"] == choose_production(rows)["version"]
    assert summary["predict"]["version"] == production
    assert summary["lineage"] == [
        {"version": v.ref, "parent": v.parent, "relation": v.relation, "aliases": list(v.aliases)}
        for v in (a1, b["demo-b:1"], b["demo-b:2"], b["demo-b:3"])]


@pytest.mark.slow
def test_quick_demo_transfer_diff_info_and_pictures_recomputed(quick_demo):
    import numpy as np
    from PIL import Image

    from yolokit.model import YOLO
    from yolokit.registry import Registry
    from yolokit.train.transfer import prepare_for_training

    out, summary, _, _ = quick_demo
    _, transfer = prepare_for_training(summary["train_a"]["weights"], list(CLASSES_B))
    assert (summary["fine_tune_b"]["transferred"], summary["fine_tune_b"]["tensors"]) == (transfer.transferred,
                                                                                          transfer.total)
    assert transfer.transferred < transfer.total  # the class outputs changed shape (3 -> 2 classes)
    weights = Registry(out / "registry").diff("demo-a:1", "demo-b:1")["weights"]
    layers = sorted((e for e in weights["layers"] if e["rel_l2"] is not None), key=lambda e: -e["rel_l2"])[:3]
    assert summary["diff"]["top_layers"] == [{"layer": e["layer"], "rel_l2": e["rel_l2"]} for e in layers]
    assert (summary["diff"]["rel_l2"], summary["diff"]["changed"]) == (weights["rel_l2"], weights["changed"])
    info = summary["info"]
    assert tuple(YOLO(FRESH_SPEC, num_classes=3).info(imgsz=info["imgsz"], verbose=False)) == (
        info["layers"], info["parameters"], info["gradients"], info["gflops"])
    predicted = summary["predict"]
    assert predicted["images"] == QUICK.predict == len(predicted["saved"])
    assert all(Path(p).is_file() for p in predicted["saved"])
    picture = Path(predicted["picture"])
    assert picture.stat().st_size < 150_000
    with Image.open(picture) as image:
        assert image.size == (2 * 2 * QUICK.imgsz, 2 * QUICK.imgsz)  # two tiles side by side, upscaled 2x
        assert len(np.unique(np.asarray(image))) > 8  # a picture, not a blank sheet


def test_choose_production_takes_the_smallest_file_within_one_point_of_the_best():
    rows = [{"v": "fp32", "map": 0.500, "size_bytes": 10_000}, {"v": "onnx", "map": 0.490, "size_bytes": 9_000},
            {"v": "int8", "map": 0.4899, "size_bytes": 3_000}]
    assert choose_production(rows)["v"] == "onnx"  # int8 is 1.01 points below the best
    rows[2]["map"] = 0.490
    assert choose_production(rows)["v"] == "int8"  # exactly 1 point below: within
    assert choose_production(rows, points=0.5)["v"] == "fp32"
    same_size = [{"v": "a", "map": 0.30, "size_bytes": 5}, {"v": "b", "map": 0.305, "size_bytes": 5}]
    assert choose_production(same_size)["v"] == "b"
    with pytest.raises(ConfigError):
        choose_production([])


def test_python_m_yolokit_runs_the_cli():
    done = _python_m_yolokit("version")
    assert done.returncode == 0 and done.stdout.strip() == yolokit.__version__


def test_demo_refuses_an_unknown_key_before_any_work(tmp_path):
    done = _python_m_yolokit("demo", f"out={tmp_path / 'demo'}", "qiuck=True")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "qiuck" in done.stderr and "'quick'" in done.stderr
    assert not (tmp_path / "demo").exists()


def test_demo_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    done = _python_m_yolokit("demo", f"out={tmp_path}", "--quick")
    assert done.returncode == 2 and "was not written by the demo" in done.stderr
    assert (tmp_path / "mine.txt").read_text() == "keep me" and not (tmp_path / MARKER).exists()
