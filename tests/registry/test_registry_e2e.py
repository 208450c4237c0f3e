"""End to end through the CLI and ``YOLO``: register, export with ``register=``, lineage, diff, aliases and audit,
pull, and a flipped byte refused on pull and on ``YOLO("registry://...")``."""

from __future__ import annotations

import os

import pytest
from registry_helpers import files  # noqa: F401 - fixture

from yolokit.cli import main
from yolokit.errors import RegistryError


def _run(capsys, *args: str) -> str:
    capsys.readouterr()
    assert main(list(args)) == 0
    return capsys.readouterr().out


def _flip_byte(path) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x10
    path.write_bytes(bytes(data))


def test_end_to_end(files, tmp_path, monkeypatch, capsys):  # noqa: F811
    import torch

    from yolokit import YOLO
    from yolokit.registry import Registry
    from yolokit.weights import load_weights

    monkeypatch.setenv("YOLOKIT_REGISTRY", str(tmp_path / "registry"))
    monkeypatch.chdir(tmp_path)
    reg = Registry()
    assert "Registered demo:1 (safetensors fp32)" in _run(capsys, "registry", "register", "demo",
                                                           str(files.pretrained), "--tag", "stage=pretrained")
    out = _run(capsys, "registry", "register", "demo", str(files.finetuned), "--note", "head fine-tuned")
    assert "Registered demo:2 (safetensors fp32, finetuned from demo:1)" in out  # found by its parent_sha256

    # export a registered version with register=: the ONNX file becomes a child of demo:2
    out = _run(capsys, "export", "model=registry://demo:2", "format=onnx", "imgsz=64", "register=demo")
    assert (tmp_path / "demo-v2.onnx").is_file()  # default name in the working directory, not in the blob store
    onnx = reg.resolve("demo:3")
    assert (onnx.format, onnx.precision, onnx.parent, onnx.relation) == ("onnx", "fp32", "demo:2", "exported")
    out = _run(capsys, "registry", "register", "demo", str(files.int8), "--parent", "demo:3")
    assert "Registered demo:4 (onnx int8, quantized from demo:3)" in out

    lineage = _run(capsys, "registry", "lineage", "demo:2").splitlines()
    assert lineage[0].startswith("demo:1 ") and lineage[1].startswith("└─ [finetuned] demo:2 ")
    assert lineage[2].startswith("   └─ [exported] demo:3 ") and lineage[3].startswith("      └─ [quantized] demo:4 ")
    history = _run(capsys, "registry", "history", "demo").splitlines()
    assert [line.split()[0] for line in history] == ["demo:1", "demo:2", "demo:3", "demo:4"]

    diff = _run(capsys, "registry", "diff", "demo:1", "demo:2")
    assert "frozen (unchanged) layers: model.0, model.1, model.2, model.3, model.4" in diff
    assert "  model.5 " in diff and "changed" in diff and "largest movers:" in diff
    assert "quantization error" in _run(capsys, "registry", "diff", "demo:3", "demo:4")

    _run(capsys, "registry", "alias", "demo:1", "production")
    assert _run(capsys, "registry", "alias", "demo:2", "production").strip() == "demo@production -> demo:2"
    audit = [line for line in _run(capsys, "registry", "audit", "demo").splitlines() if "alias production" in line]
    assert [line.split("alias production: ")[1] for line in audit] == ["- -> :1", ":1 -> :2"]
    assert "production" in _run(capsys, "registry", "list")

    pulled = _run(capsys, "registry", "pull", "demo@production", str(tmp_path / "deploy") + "/")
    assert "sha256 verified" in pulled
    assert (tmp_path / "deploy" / "demo-v2.safetensors").read_bytes() == files.finetuned.read_bytes()

    model = YOLO("registry://demo@production")
    assert model.registry_version.ref == "demo:2" and model.names == {0: "cat", 1: "dog", 2: "bird"}
    expected = load_weights(files.finetuned).state_dict()
    assert all(torch.equal(t, expected[k]) for k, t in model.model.state_dict().items())
    assert YOLO("registry://demo:3").is_onnx

    # one flipped byte in a blob: refused on pull and on load, with one line naming the version
    _flip_byte(reg.store.path_for(reg.resolve("demo:2").sha256))
    capsys.readouterr()
    assert main(["registry", "pull", "demo@production", str(tmp_path / "deploy2.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: demo:2: its file ") and "was modified" in err and err.count("\n") == 1
    assert not (tmp_path / "deploy2.safetensors").exists()
    with pytest.raises(RegistryError, match="^demo:2: its file .* was modified"):
        YOLO("registry://demo@production")
    _flip_byte(reg.store.path_for(onnx.sha256))
    with pytest.raises(RegistryError, match="^demo:3: its file .* was modified"):
        YOLO("registry://demo:3")
    reg.store.path_for(onnx.sha256).unlink()
    with pytest.raises(RegistryError, match="^demo:3: its file .* is missing"):
        YOLO("registry://demo:3")


def test_export_of_unregistered_weights_registers_them_first(files, tmp_path):  # noqa: F811
    import shutil

    from yolokit import YOLO
    from yolokit.registry import Registry

    weights = shutil.copy(files.finetuned, tmp_path / "best.safetensors")
    YOLO(weights).export(format="onnx", imgsz=64, register="det", registry=str(tmp_path / "reg"))
    history = Registry(tmp_path / "reg").history("det")
    assert [(v.ref, v.format, v.parent, v.relation) for v in history] == [
        ("det:1", "safetensors", None, None), ("det:2", "onnx", "det:1", "exported")]


def test_cli_errors_are_one_line(tmp_path, capsys):
    base = ["registry", "--registry", str(tmp_path / "r")]
    for args, message in ((["show", "demo"], "is empty"), (["register", "../x", "f.pt"], "invalid model name"),
                          (["alias", "demo:1", "latest"], "invalid alias"), (["frobnicate"], "invalid choice")):
        capsys.readouterr()
        assert main([*base, *args]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()  # failed commands created nothing


def test_show_and_json_output(files, tmp_path, capsys):  # noqa: F811
    import json

    base = ["registry", "--registry", str(tmp_path / "r")]
    _run(capsys, *base, "register", "demo", str(files.pretrained), "--tag", "k=v")
    shown = _run(capsys, *base, "show", "demo")
    assert "Version     demo:1" in shown and "Tags        k=v" in shown and "Classes     3: 0 cat, 1 dog" in shown
    data = json.loads(_run(capsys, *base, "show", "demo:1", "--json"))
    assert data["ref"] == "demo:1" and data["names"] == {"0": "cat", "1": "dog", "2": "bird"}
    assert json.loads(_run(capsys, *base, "list", "--json"))[0]["name"] == "demo"


@pytest.fixture
def one_torch_thread():
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared 2-core machine: one thread is much faster
    yield
    torch.set_num_threads(saved)


@pytest.mark.slow  # one real training epoch and an INT8 export with its calibration and budget check: ~10-40 s
def test_train_then_export_onnx_and_int8_with_register(tmp_path, one_torch_thread):
    """The acceptance chain through ``YOLO``: train(register=) -> export ONNX and INT8 (register=), each a child."""
    from registry_helpers import save, tiny_model

    from yolokit import YOLO
    from yolokit.data.synth import make_synthetic_dataset
    from yolokit.registry import Registry
    from yolokit.registry.report import format_lineage

    registry = str(tmp_path / "reg")
    reg = Registry(registry)
    pretrained = save(tiny_model(names={0: "rectangle", 1: "ellipse", 2: "triangle"}), tmp_path / "pre.safetensors")
    reg.register("shapes", pretrained)
    data = make_synthetic_dataset(tmp_path / "data", n_train=8, n_val=4, imgsz=64, seed=0)
    model = YOLO(pretrained)
    model.train(data=str(data), epochs=1, imgsz=64, batch=4, nbs=8, workers=0, plots=False, verbose=False,
                warmup_epochs=1, freeze=3, project=str(tmp_path / "runs"), name="t", register="shapes",
                registry=registry)
    model.export(format="onnx", imgsz=64, register="shapes", registry=registry)
    model.export(format="onnx", imgsz=64, int8=True, data=str(data), calib_images=4, force=True, register="shapes",
                 registry=registry)
    chain = [(v.ref, v.format, v.precision, v.parent, v.relation) for v in reg.history("shapes")]
    assert chain == [("shapes:1", "safetensors", "fp32", None, None),
                     ("shapes:2", "safetensors", "fp32", "shapes:1", "finetuned"),
                     ("shapes:3", "onnx", "fp32", "shapes:2", "exported"),
                     ("shapes:4", "onnx", "int8", "shapes:2", "quantized")]
    assert reg.resolve("shapes:2").train_args["epochs"] == 1 and "map50" in reg.resolve("shapes:2").metrics
    lineage = format_lineage(reg.lineage("shapes:2")).splitlines()
    assert lineage[1].startswith("└─ [finetuned] shapes:2") and "[exported] shapes:3" in lineage[2]
    weights = reg.diff("shapes:1", "shapes:2")["weights"]
    assert weights["frozen_layers"][:3] == ["model.0", "model.1", "model.2"]  # freeze=3: layers 0-2
    assert "model.5" in weights["changed_layers"]
    quant = reg.diff("shapes:3", "shapes:4")["weights"]  # the INT8 file against the FP32 export, node by node
    assert quant["mode"] == "quantization" and quant["only_a"] == [] and quant["only_b"] == []
    assert quant["stored"].get("int8", 0) > 10 and 0 < quant["rel_l2"] < 0.05


def test_reading_commands_load_no_torch(files, tmp_path):  # noqa: F811
    import subprocess
    import sys

    from yolokit.registry import Registry

    Registry(tmp_path / "r").register("demo", files.pretrained)
    code = ("import sys; from yolokit.cli import main\n"
            f"for cmd in (['list'], ['show', 'demo'], ['history', 'demo'], ['lineage', 'demo:1'], ['audit', 'demo']):\n"
            f"    assert main(['registry', '--registry', {str(tmp_path / 'r')!r}, *cmd]) == 0\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"
