"""Unwritable outputs fail before the work starts, with one line (``OutputPathError``, a ``ConfigError``; CLI exit 2),
and leave nothing half-written: every export format, ``YOLO.save``, ``convert_weights``, the registry, and the run
folders of train / predict / val. The targets fail for root too (a parent that is a regular file, a path under
``/proc``); a chmod-ed folder is added when not running as root (root ignores permission bits)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from security_helpers import ROOT

from yolokit.errors import OutputPathError

FIXTURE = ROOT / "tests" / "fixtures" / "yolo26-tiny-shapes.pt"
KINDS = ["parent-is-a-file", "proc"] + ([] if os.geteuid() == 0 else ["read-only-folder"])


@pytest.fixture(params=KINDS)
def bad_dir(request, tmp_path):
    """A folder path that cannot be created or written (``kind`` as the parameter says)."""
    if request.param == "parent-is-a-file":
        (tmp_path / "blocker").write_text("a regular file")
        yield tmp_path / "blocker" / "out"
    elif request.param == "proc":
        yield Path("/proc/yolokit-no-such-dir/out")
    else:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o500)
        yield folder / "out"
        folder.chmod(0o700)


def _nothing_written(tmp_path):
    return [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "blocker"] == []


@pytest.fixture(scope="module")
def model():
    from yolokit import YOLO

    return YOLO(FIXTURE)


@pytest.mark.parametrize("options", [{"format": "onnx"}, {"format": "onnx", "half": True},
                                     {"format": "onnx", "int8": True, "data": "calibration.yaml"},
                                     {"format": "torchscript"},
                                     {"format": "safetensors"}, {"format": "pt"}],
                         ids=["onnx", "fp16", "int8", "torchscript", "safetensors", "pt"])  # fmt: skip
def test_every_export_format_fails_before_exporting(model, bad_dir, tmp_path, options, monkeypatch):
    from yolokit.export import onnx as onnx_export

    monkeypatch.setattr(onnx_export, "prepare_for_export", lambda *a: pytest.fail("the export started"))
    suffix = {"onnx": ".onnx", "torchscript": ".torchscript", "safetensors": ".safetensors", "pt": ".pt"}
    with pytest.raises(OutputPathError, match=f"cannot write the .*{bad_dir.name}") as error:
        model.export(**options, imgsz=64, file=str(bad_dir / f"m{suffix[options['format']]}"))
    assert "\n" not in str(error.value) and _nothing_written(tmp_path)


def test_save_convert_and_registry_fail_with_one_line(model, bad_dir, tmp_path):
    from yolokit.registry import Registry
    from yolokit.weights import convert_weights

    with pytest.raises(OutputPathError, match="weights file"):
        model.save(bad_dir / "w.safetensors")
    with pytest.raises(OutputPathError, match="converted weights file"):
        convert_weights(FIXTURE, bad_dir / "w.pt")
    with pytest.raises(OutputPathError, match="registry folder"):
        Registry(bad_dir).register("m", FIXTURE)
    with pytest.raises(OutputPathError, match="registry folder"):
        model.export(format="safetensors", file=str(tmp_path / "ok.safetensors"), register="m", registry=str(bad_dir))
    assert not (tmp_path / "ok.safetensors").exists()  # checked before the export, not after it


def test_a_folder_or_read_only_file_as_target(model, tmp_path):
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(OutputPathError, match="it is a folder"):
        model.export(format="onnx", imgsz=64, file=str(tmp_path / "dir.onnx"))
    if os.geteuid() != 0:  # root may write a read-only file
        locked = tmp_path / "locked.safetensors"
        locked.write_bytes(b"keep")
        locked.chmod(0o400)
        with pytest.raises(OutputPathError, match="read-only"):
            model.save(locked)
        assert locked.read_bytes() == b"keep"


def test_run_folders_of_train_predict_and_val(model, bad_dir, tmp_path):
    from yolokit.data.synth import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "data", n_train=2, n_val=2, imgsz=64, seed=0)
    image = next((tmp_path / "data").rglob("*.jpg"))
    with pytest.raises(OutputPathError, match="output folder"):
        model.predict(str(image), imgsz=64, save=True, project=str(bad_dir), verbose=False)
    with pytest.raises(OutputPathError, match="output folder"):
        model.val(data=str(data), imgsz=64, project=str(bad_dir), verbose=False)
    with pytest.raises(OutputPathError, match="output folder"):
        model.train(data=str(data), imgsz=64, epochs=1, project=str(bad_dir), verbose=False)


def test_cli_export_exit_2_one_line(tmp_path):
    (tmp_path / "blocker").write_text("a regular file")
    proc = subprocess.run([sys.executable, "-m", "yolokit", "export", f"model={FIXTURE}", "format=onnx", "imgsz=64",
                           f"file={tmp_path / 'blocker' / 'm.onnx'}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "cannot write the folder of the onnx export file" in proc.stderr and "Traceback" not in proc.stderr


def test_synth_demo_and_benchmark_fail_before_any_work(model, bad_dir, tmp_path, monkeypatch):
    import yolokit.demo
    from yolokit.data import classify_synth, synth
    from yolokit.deploy import benchmark

    for module, name in ((synth, "render_image"), (classify_synth, "render_class_image"), (yolokit.demo, "_Walk"),
                         (benchmark, "_pytorch"), (benchmark, "_export")):
        monkeypatch.setattr(module, name, lambda *a, _n=name, **k: pytest.fail(f"the work started ({_n})"))
    with pytest.raises(OutputPathError, match="cannot write the synthetic dataset folder"):
        synth.make_synthetic_dataset(bad_dir, n_train=2, n_val=1, imgsz=64)
    with pytest.raises(OutputPathError, match="cannot write the synthetic dataset folder"):
        classify_synth.make_synthetic_classification(bad_dir, n_train=5, n_val=1, imgsz=64)
    with pytest.raises(OutputPathError, match="cannot write the demo output folder"):
        yolokit.demo.run_demo(bad_dir, quick=True)
    with pytest.raises(OutputPathError, match="cannot write the benchmark output folder") as error:
        model.benchmark(imgsz=64, out=bad_dir, rounds=1)
    assert "\n" not in str(error.value) and _nothing_written(tmp_path)


def test_a_file_as_the_output_folder(model, tmp_path):
    from yolokit.data.synth import make_synthetic_dataset
    from yolokit.demo import run_demo

    target = tmp_path / "taken"
    target.write_text("keep")
    for run in (lambda: make_synthetic_dataset(target, n_train=2, n_val=1, imgsz=64),
                lambda: run_demo(target, quick=True), lambda: model.benchmark(imgsz=64, out=target, rounds=1)):
        with pytest.raises(OutputPathError, match="it is a file, not a folder"):
            run()
    assert target.read_text() == "keep"


@pytest.mark.parametrize("argv", [["data", "synth", "{out}", "--train", "2", "--val", "1", "--imgsz", "64"],
                                  ["data", "synth", "{out}", "--task", "classify", "--train", "5"],
                                  ["demo", "out={out}", "--quick"],
                                  ["benchmark", f"model={FIXTURE}", "imgsz=64", "out={out}"]],
                         ids=["synth", "synth-classify", "demo", "benchmark"])  # fmt: skip
def test_cli_synth_demo_benchmark_exit_2_one_line(argv, bad_dir, tmp_path, monkeypatch, capsys):
    import yolokit.cli
    import yolokit.demo
    from yolokit.data import classify_synth, synth

    for module, name in ((synth, "render_image"), (classify_synth, "render_class_image"), (yolokit.demo, "_Walk"),
                         (yolokit.cli, "_load")):  # the model is not even read before out= is checked
        monkeypatch.setattr(module, name, lambda *a, _n=name, **k: pytest.fail(f"the work started ({_n})"))
    assert yolokit.cli.main([word.format(out=bad_dir) for word in argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "cannot write the" in err and str(bad_dir) in err, err
    assert _nothing_written(tmp_path)
