"""Every example in the README runs as written (issue 17 item 5).

The README's ``bash`` blocks are read for ``yolokit ...`` lines and its ``python`` block for statements; each is
run in a fresh folder that holds what the README's words refer to, made from the tiny committed fixtures:
``best.pt`` (a reference-trained 3-class YOLO26 checkpoint), ``best.safetensors`` (the same, converted),
``images/`` and ``bus.jpg`` (fixture images), ``video.mp4`` (a few frames) and ``data.yaml`` (a small synthetic
dataset). A line with ``[optional]`` parts runs without them and with all of them. Only what needs the network (or
opens a window, or runs the whole test suite) is skipped, by an explicit table whose entries must still be in the
README, so neither the README nor the table can drift.
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
SKIP_VARIANTS = {  # expanded [optional] forms already run elsewhere
    "demo out=demo_out weights=best.pt": "tests/test_demo.py walks the demo with reference weights",
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
    """``yolokit x a [b] [c]`` -> ``[[x, a], [x, a, b, c]]`` (argv without ``yolokit``)."""
    words = line.split()[1:]
    bare = [w for w in words if not w.startswith("[")]
    full = [w.strip("[]") for w in words]
    return [bare] if bare == full else [bare, full]


def test_the_readme_has_examples_and_the_skip_tables_are_current():
    lines, statements = shell_lines(), python_statements()
    assert sum(line.startswith("yolokit ") for line in lines) >= 10 and len(statements) >= 20
    for line in lines:
        assert line.startswith("yolokit ") or line in SKIP_SHELL, f"README line neither run nor skipped: {line}"
    assert set(SKIP_SHELL) <= set(lines) and set(SKIP_PYTHON) <= set(statements), "stale skip entry"
    expanded = {" ".join(argv) for line in lines if line.startswith("yolokit ") for argv in variants(line)}
    assert set(SKIP_VARIANTS) <= expanded, "stale skip entry"


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
        for argv in variants(line):
            if " ".join(argv) in SKIP_VARIANTS:
                continue
            status = main(argv)
            err = capsys.readouterr().err
            assert status == 0, f"'yolokit {' '.join(argv)}' exited {status}: {err.strip()}"
            ran += 1
    assert ran >= 15
    assert (workspace / "best.onnx").is_file() and (workspace / "demo_out" / "val" / "metrics.json").is_file()


@pytest.mark.slow
def test_every_readme_python_statement_runs_as_written(workspace):
    namespace: dict = {}
    ran = 0
    for statement in python_statements():
        if statement in SKIP_PYTHON:
            continue
        try:
            exec(compile(statement, "README.md", "exec"), namespace)  # noqa: S102 - the README's own examples
        except Exception as error:  # noqa: BLE001 - report which README statement failed
            pytest.fail(f"README statement failed: {statement!r}: {type(error).__name__}: {error}")
        ran += 1
    assert ran >= 20
    assert (workspace / "best.onnx").is_file() and (workspace / "boxes.csv").read_text().startswith("name,class")
