import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from yolokit.errors import SpecError
from yolokit.models.spec import (
    KNOWN_MODULES,
    canonical_module_name,
    guess_scale,
    load_spec,
    model_display_name,
    shipped_specs,
    validate_spec,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.mark.parametrize(
    ("source", "scale", "yaml_file"),
    [("yolo26n.yaml", "n", "yolo26n.yaml"), ("yolo26n", "n", "yolo26n.yaml"), ("yolov8s.yaml", "s", "yolov8s.yaml"),
     ("yolo11x", "x", "yolo11x.yaml"), ("yolo11m.yml", "m", "yolo11m.yaml")],
)
def test_load_shipped_names(source, scale, yaml_file):
    spec = load_spec(source)
    assert spec["scale"] == scale and spec["yaml_file"] == yaml_file
    assert set(spec["scales"]) == set("nslmx")


def test_shipped_families_and_rows():
    assert shipped_specs() == ["yolo11", "yolo11-cls", "yolo26", "yolo26-cls", "yolov5", "yolov8", "yolov8-cls"]
    v8, y11, y26 = load_spec("yolov8n"), load_spec("yolo11n"), load_spec("yolo26n")
    assert len(v8["backbone"]) + len(v8["head"]) == 23 and len(y26["backbone"]) + len(y26["head"]) == 24
    assert v8["scales"]["m"] == [0.67, 0.75, 768] and y11["scales"]["x"] == [1.0, 1.5, 512]
    assert y26["end2end"] is True and y26["reg_max"] == 1 and "end2end" not in y11
    assert y26["backbone"][9] == [-1, 1, "SPPF", [1024, 5, 3, True]]
    assert y26["head"][-2] == [-1, 1, "C3k2", [1024, True, 0.5, True]]
    assert v8["head"][0] == [-1, 1, "nn.Upsample", ["None", 2, "nearest"]]  # the strings checkpoints store
    assert y11["head"][-1] == [[16, 19, 22], 1, "Detect", ["nc"]]


def test_fixture_path_with_single_scale():
    spec = load_spec(FIXTURES / "yolo26-tiny.yaml")
    assert spec["scale"] == "n" and spec["yaml_file"].endswith("yolo26-tiny.yaml")
    assert model_display_name(spec) == "YOLO26-tiny"


def test_dict_spec_from_checkpoint(tmp_path):
    raw = yaml.safe_load((FIXTURES / "yolov8-tiny.yaml").read_text())
    raw.update(scale="", yaml_file="yolov8-tiny.yaml", channels=3, nc=5)
    raw["head"][0][2] = "torch.nn.Upsample"
    spec = load_spec(raw)
    assert spec["scale"] == "n" and spec["nc"] == 5 and spec["channels"] == 3
    assert raw["scale"] == ""  # the input dict is not modified
    many = load_spec({**load_spec("yolo11n"), "yaml_file": "custom.yaml", "scale": "s"})
    assert many["scale"] == "s"


def test_scale_priority_and_unknown_scale(tmp_path):
    assert guess_scale("path/to/yolo11l-custom.yaml") == "l" and guess_scale("yolo26-tiny.yaml") is None
    assert guess_scale("yoloe-v8s.yaml") == "s" and guess_scale("yoloe-11m.yaml") == "m"
    assert guess_scale("detector.yaml") is None
    spec = load_spec("yolo26n")
    path = tmp_path / "yolo26q.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in spec.items() if k not in ("scale", "yaml_file")}, sort_keys=False))
    with pytest.raises(SpecError, match="cannot tell the model scale.*n, s, m, l, x"):
        load_spec(path)
    with pytest.raises(SpecError, match="unknown model scale 'q'.*valid scales are n, s, m, l, x"):
        load_spec({**spec, "yaml_file": "", "scale": "q"})
    with pytest.raises(SpecError, match="cannot tell the model scale"):
        load_spec("yolo26.yaml")


def test_missing_or_broken_sources(tmp_path):
    families = "yolo11, yolo11-cls, yolo26, yolo26-cls, yolov5, yolov8, yolov8-cls"
    with pytest.raises(SpecError, match=f"not found.*{families}"):
        load_spec("yolo99n.yaml")
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("nc: [1\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="expected a mapping"):
        load_spec(bad)


def _spec_with_row(index: int, row: list) -> dict:
    spec = load_spec("yolov8n")
    rows = spec["backbone"] + spec["head"]
    rows[index] = row
    spec["backbone"], spec["head"] = rows[:10], rows[10:]
    return spec


@pytest.mark.parametrize(
    ("index", "row", "message"),
    [
        (3, [-1, 1, "Conv"], r"layer 3: expected a row \[from, repeats, module, args\]"),
        (5, [7, 1, "Conv", [64, 3, 2]], "layer 5: 'from' index 7"),
        (5, [5, 1, "Conv", [64, 3, 2]], "layer 5: 'from' index 5"),
        (4, [[-1, -9], 1, "Concat", [1]], "layer 4: 'from' index -9"),
        (0, [-2, 1, "Conv", [64, 3, 2]], "layer 0: 'from' must be -1"),
        (6, [-1, 0, "C2f", [128]], "layer 6: expected 'repeats' to be an int >= 1"),
        (7, [-1, 1, "Conv2x", [64]], "layer 7: unknown module type 'Conv2x'; known types: Conv, DWConv"),
        (7, [-1, 1, "nn.Conv2d", [64]], "layer 7: unknown module type 'nn.Conv2d'.*nn.Upsample"),
        (8, [-1, 1, "Conv", 64], "layer 8: expected 'args' to be a list"),
        (9, ["x", 1, "Conv", [64]], "layer 9: expected 'from' to be int layer indices"),
    ],
)
def test_validate_spec_names_the_layer(index, row, message):
    with pytest.raises(SpecError, match=message):
        validate_spec(_spec_with_row(index, row))


def test_validate_top_level_keys():
    spec = load_spec("yolov8n")
    with pytest.raises(SpecError, match="'nc' to be a positive class count"):
        validate_spec({**spec, "nc": 0})
    with pytest.raises(SpecError, match="'head' to be a list"):
        validate_spec({k: v for k, v in spec.items() if k != "head"})
    with pytest.raises(SpecError, match=r"expected \[depth, width, max_channels\]"):
        validate_spec({**spec, "scales": {"n": [0.33, 0.25]}})


def test_module_names_and_display_name():
    assert canonical_module_name("nn.Upsample") == "Upsample" == canonical_module_name("torch.nn.Upsample")
    assert canonical_module_name("nn.C2f") is None and canonical_module_name("C2f") == "C2f"
    assert "Detect" in KNOWN_MODULES
    assert model_display_name(load_spec("yolo26n")) == "YOLO26n"
    assert model_display_name(load_spec("yolov8n.yaml")) == "YOLOv8n"
    assert model_display_name({}) == "Model"


def test_spec_module_does_not_import_torch():
    code = "import sys, yolokit.models.spec as s; s.load_spec('yolo26n'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
