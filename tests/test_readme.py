"""Every example in the README runs as written (issue 17 item 5).

The README's ``bash`` blocks are read for ``yolokit ...`` lines and its ``python`` block for statements; each is
run in a fresh folder that holds what the README's words refer to, made from the tiny committed fixtures:
``best.pt`` (a reference-trained 3-class YOLO26 checkpoint), ``best.safetensors`` (the same, converted),
``images/`` and ``bus.jpg`` (fixture images), ``video.mp4`` (a few frames) and ``data.yaml`` (a small synthetic
dataset). A line with ``[optional]`` parts runs without them and with all of them. Only what needs the network (or
opens a window, or runs the whole test suite) is skipped, and what takes minutes (training for 100 epochs, INT8
calibration, the demo's training walk) is *checked*: the command line goes through the CLI's own checks of every key
and value and reaches the model call, which is then stopped (its own tests run it). Both tables name their reason
and their entries must still be in the README, so neither the README nor the tables can drift.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FIXTURES = ROOT / "tests" / "fixtures"

# README lines that are not run, and why (each must still be in the README).
SKIP_SHELL = {
    "make demo": "creates .venv and runs the demo: the demo lines below run it in-process",
    "make test": "runs this whole test suite",
}
# README command lines (as written, comment removed) whose keys and values are checked but which are not run.
CHECK_ONLY = {
    "yolokit train model=yolo26n.yaml data=data.yaml epochs=100 imgsz=640 batch=16 [freeze=10 optimizer=SGD]":
        "trains YOLO26n for 100 epochs at 640 (tests/train/test_train_cli.py trains through the CLI)",
    "yolokit train resume=runs/train": "needs an interrupted run (tests/train/test_resume.py)",
    "yolokit export model=best.pt format=onnx int8=True data=data.yaml [int8_budget=1.0 calib_method=minmax]":
        "INT8 calibration and its mAP budget (tests/export/test_quantize_int8.py)",
    "yolokit benchmark model=best.pt data=data.yaml imgsz=320": "exports and times every format "
                                                                  "(tests/export/test_benchmark_table.py)",
    "yolokit demo out=demo_out --quick": "trains and fine-tunes (tests/test_demo.py runs the quick walk)",
}
# README statements that train or calibrate: YOLO.train / YOLO.export only build their checked settings there.
CHECK_ONLY_PYTHON = {
    'metrics = model.train(data="data.yaml", epochs=100, imgsz=640)': "100 epochs at 640 (tests/train)",
    'model.train(resume="runs/train")': "needs an interrupted run (tests/train/test_resume.py)",
    'model.export(format="onnx", int8=True, data="data.yaml")': "INT8 calibration (tests/export)",
}
SKIP_PYTHON = {
    'model = YOLO("yolo26n.pt")': "network: downloads the published weights",
    'model = YOLO("https://example.org/w.pt")': "network: a URL",
    "r.show()": "opens an image viewer",
}


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def shell_lines() -> list[str]:
    """Every command line of the README's bash blocks, without its trailing ``# comment``."""
    lines = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line:
                lines.append(line)
    return lines


def python_statements() -> list[str]:
    """The top-level statements of the README's python blocks, as written."""
    out = []
    for block in _blocks("python"):
        tree = ast.parse(block)
        out += [ast.get_source_segment(block, node) for node in tree.body]
    return out


def variants(line: str) -> list[list[str]]:
    """``yolokit x a [b] [c d]`` -> ``[[x, a], [x, a, b, c, d]]`` (argv without ``yolokit``)."""
    bare = re.sub(r"\[[^\]]*\]", " ", line).split()[1:]
    full = line.replace("[", " ").replace("]", " ").split()[1:]
    return [bare] if bare == full else [bare, full]


def test_the_readme_has_examples_and_the_skip_tables_are_current():
    lines, statements = shell_lines(), python_statements()
    assert sum(line.startswith("yolokit ") for line in lines) >= 10 and len(statements) >= 20
    for line in lines:
        assert line.startswith("yolokit ") or line in SKIP_SHELL, f"README line neither run nor skipped: {line}"
    assert set(SKIP_SHELL) <= set(lines) and set(SKIP_PYTHON) <= set(statements), "stale skip entry"
    assert set(CHECK_ONLY) <= set(lines) and set(CHECK_ONLY_PYTHON) <= set(statements), "stale check-only entry"


class _Reached(Exception):
    """Raised in place of a check-only command's model call: everything before it (every key and value) passed."""


def _check_only(argv: list[str], monkeypatch) -> None:
    """Run ``argv`` through the CLI up to the call that would do the work (model loading or the demo walk)."""
    import yolokit.cli
    import yolokit.demo

    def reached(*args, **kwargs):
        raise _Reached(argv)

    with monkeypatch.context() as patch:
        patch.setattr(yolokit.cli, "_load", reached)
        patch.setattr(yolokit.demo, "run_demo", reached)
        with pytest.raises(_Reached):
            yolokit.cli.main(argv)


def test_check_only_commands_pass_the_cli_checks(workspace, monkeypatch):
    for line in CHECK_ONLY:
        for argv in variants(line):
            _check_only(argv, monkeypatch)


def _workspace(path: Path) -> Path:
    """What the README's examples refer to, from the committed fixtures."""
    import cv2
    import numpy as np

    from yolokit.data.synth import make_synthetic_dataset
    from yolokit.weights import convert_weights

    path.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIXTURES / "yolo26-tiny-shapes.pt", path / "best.pt")
    convert_weights(path / "best.pt", path / "best.safetensors")
    shutil.copytree(FIXTURES / "images", path / "images")
    shutil.copyfile(FIXTURES / "images" / "00000.jpg", path / "bus.jpg")
    writer = cv2.VideoWriter(str(path / "video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5, (96, 64))
    for k in range(3):
        writer.write(np.full((64, 96, 3), 60 * k, np.uint8))
    writer.release()
    make_synthetic_dataset(path / "shapes", n_train=2, n_val=4, imgsz=96, seed=0)
    (path / "data.yaml").write_text("path: shapes\ntrain: images/train\nval: images/val\n"
                                    "names: {0: rectangle, 1: ellipse, 2: triangle}\n")
    return path


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    import yolokit.demo

    monkeypatch.setenv("YOLOKIT_REGISTRY", str(tmp_path / "registry"))
    monkeypatch.setattr(yolokit.demo, "FRESH_SPEC", str(FIXTURES / "yolo26-tiny.yaml"))  # the demo, tiny
    folder = _workspace(tmp_path / "work")
    monkeypatch.chdir(folder)
    return folder


@pytest.mark.slow
def test_every_readme_command_runs_as_written(workspace, capsys):
    from yolokit.cli import main

    ran = 0
    for line in shell_lines():
        if line in SKIP_SHELL:
            continue
        if line in CHECK_ONLY:
            continue
        for argv in variants(line):
            status = main(argv)
            err = capsys.readouterr().err
            assert status == 0, f"'yolokit {' '.join(argv)}' exited {status}: {err.strip()}"
            ran += 1
    assert ran >= 15
    assert (workspace / "best.onnx").is_file() and (workspace / "runs" / "val" / "metrics.json").is_file()


def _settings_only(monkeypatch) -> None:
    """YOLO.train / YOLO.export build and check their settings (every key and value) and return."""
    from yolokit.config import ExportConfig, make_config
    from yolokit.model import YOLO

    def train(self, data=None, **overrides):
        return make_config(self.task_spec.load("train_config"), overrides, **({"data": str(data)} if data else {}))

    def export(self, format="onnx", **overrides):  # noqa: A002 - the facade's keyword
        return make_config(ExportConfig, overrides, format=format)

    monkeypatch.setattr(YOLO, "train", train)
    monkeypatch.setattr(YOLO, "export", export)


@pytest.mark.slow
def test_every_readme_python_statement_runs_as_written(workspace, monkeypatch):
    namespace: dict = {}
    ran = 0
    for statement in python_statements():
        if statement in SKIP_PYTHON:
            continue
        try:
            with monkeypatch.context() as patch:
                if statement in CHECK_ONLY_PYTHON:
                    _settings_only(patch)
                exec(compile(statement, "README.md", "exec"), namespace)  # noqa: S102 - the README's own examples
        except Exception as error:  # noqa: BLE001 - report which README statement failed
            pytest.fail(f"README statement failed: {statement!r}: {type(error).__name__}: {error}")
        ran += 1
    assert ran >= 20
    assert (workspace / "best.onnx").is_file() and (workspace / "boxes.csv").read_text().startswith("name,class")
