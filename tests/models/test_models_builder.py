from pathlib import Path

import pytest
import torch
import yaml

from yolokit.errors import SpecError
from yolokit.models.builder import LAYER_TYPES, build_model
from yolokit.models.spec import KNOWN_MODULES, load_spec
from yolokit.nn import Bottleneck, C3k, Detect

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _reference_keys(name: str) -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    for line in (FIXTURES / "keys" / f"{name}_keys.txt").read_text().splitlines():
        key, rest = line.split(" ", 1)
        shape = rest[rest.index("(") + 1 : rest.index(")")]
        rows.append((key, tuple(int(s) for s in shape.split(",") if s.strip())))
    return rows


@pytest.mark.parametrize("name", ["yolov8n", "yolo11n", "yolo26n"])
def test_state_dict_keys_and_shapes_equal_reference(name):
    model = build_model(f"{name}.yaml")
    mine = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    reference = _reference_keys(name)
    assert len(reference) in (355, 499, 708)
    assert mine == reference  # same keys, same shapes, same order


@pytest.mark.parametrize(
    ("name", "params", "layers"), [("yolov8n", 3_157_200, 23), ("yolo11n", 2_624_080, 24), ("yolo26n", 2_572_280, 24)]
)
def test_parameter_counts_and_layer_attributes(name, params, layers):
    model = build_model(name)
    assert sum(p.numel() for p in model.parameters()) == params
    assert len(model.model) == layers
    assert [layer.i for layer in model.model] == list(range(layers))
    assert model.model[0].type == "Conv" and model.model[0].f == -1
    assert model.head.type == "Detect" and model.head.f == ([15, 18, 21] if name == "yolov8n" else [16, 19, 22])
    assert model.stride.tolist() == [8.0, 16.0, 32.0] and model.head.stride.tolist() == [8.0, 16.0, 32.0]


def test_head_variants_follow_the_spec():
    v8, y11, y26 = build_model("yolov8n"), build_model("yolo11n"), build_model("yolo26n")
    assert v8.head.legacy and not y11.head.legacy and not y26.head.legacy
    assert (v8.head.reg_max, y26.head.reg_max) == (16, 1)
    assert not v8.end2end and y26.end2end and hasattr(y26.head, "one2one_cv3")
    assert isinstance(v8.model[9].cv1.act, torch.nn.SiLU) and isinstance(y26.model[9].cv1.act, torch.nn.Identity)
    assert y26.model[9].add and not y11.model[9].add


@pytest.mark.parametrize("family", ["yolov8", "yolo11", "yolo26"])
def test_tiny_fixture_specs_build(family):
    model = build_model(FIXTURES / f"{family}-tiny.yaml")
    assert model.nc == 3 and model.names == {0: "0", 1: "1", 2: "2"}
    assert model.model[0].conv.out_channels == 8  # ceil8(64 * 0.0625)
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 7, 84)


def test_c3k_forced_at_large_scales():
    raw = yaml.safe_load((FIXTURES / "yolo11-tiny.yaml").read_text())
    small = build_model(raw)
    raw["scales"] = {"m": raw["scales"]["n"]}
    large = build_model(raw)
    assert isinstance(small.model[2].m[0], Bottleneck) and isinstance(large.model[2].m[0], C3k)


def test_num_classes_override_and_channels():
    model = build_model("yolo26n", num_classes=7, channels=1)
    assert model.nc == 7 and model.spec["nc"] == 7 and model.head.cv3[0][2].out_channels == 7
    assert model.model[0].conv.weight.shape == (16, 1, 3, 3)
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 64, 32)).shape == (2, 11, 42)
    with pytest.raises(SpecError, match="num_classes: expected a positive int"):
        build_model("yolo26n", num_classes=0)


def test_channel_arg_equal_to_nc_is_not_scaled():
    # The reference parser leaves a channel count equal to nc unscaled (meant for classifier outputs).
    model = build_model(FIXTURES / "yolov8-tiny.yaml", num_classes=64)
    assert model.model[0].conv.out_channels == 64 and model.model[1].conv.out_channels == 8


def test_builder_table_covers_the_spec_module_names():
    assert set(LAYER_TYPES) == set(KNOWN_MODULES)


def _yolov8_tiny_rows():
    spec = load_spec(FIXTURES / "yolov8-tiny.yaml")
    return spec, spec["backbone"] + spec["head"]


def test_build_errors_name_the_layer():
    spec, rows = _yolov8_tiny_rows()
    rows[3] = [-1, 1, "Conv", ["wide", 3, 2]]
    with pytest.raises(SpecError, match=r"layer 3 \(Conv\): cannot build from args \['wide', 3, 2\]"):
        build_model({**spec, "backbone": rows[:10], "head": rows[10:]})
    spec, rows = _yolov8_tiny_rows()
    rows[9] = [-1, 1, "C2PSA", [512]]
    with pytest.raises(SpecError, match="layer 9 \\(C2PSA\\).*equal input and output channels"):
        build_model({**spec, "backbone": rows[:10], "head": rows[10:]})
    spec, rows = _yolov8_tiny_rows()
    with pytest.raises(SpecError, match="layer 21: expected the last layer to be Detect, found 'C2f'"):
        build_model({**spec, "backbone": rows[:10], "head": rows[10:22]})
    with pytest.raises(SpecError, match="layer 2: unknown module type 'C9'"):
        build_model({**spec, "backbone": rows[:2] + [[-1, 1, "C9", [1]]] + rows[3:10], "head": rows[10:]})


def test_build_does_not_touch_batchnorm_statistics():
    model = build_model(FIXTURES / "yolo26-tiny.yaml")
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(bn.running_mean.eq(0).all() and bn.running_var.eq(1).all() for bn in bns)
    assert all(int(bn.num_batches_tracked) == 0 for bn in bns)
    assert model.training


PUBLISHED_PARAMS = {  # parameter counts published for the reference models
    "yolov8s": 11_166_560, "yolov8m": 25_902_640, "yolov8l": 43_691_520, "yolov8x": 68_229_648,
    "yolo11s": 9_458_752, "yolo11m": 20_114_688, "yolo11l": 25_372_160, "yolo11x": 56_966_176,
}


@pytest.mark.slow
@pytest.mark.parametrize("family", ["yolov8", "yolo11", "yolo26"])
def test_every_scale_builds_and_runs(family):
    for scale in "nslmx":
        name = f"{family}{scale}"
        with torch.no_grad():
            model = build_model(f"{name}.yaml").eval()
            out = model(torch.zeros(1, 3, 64, 64))
        assert out.shape == (1, 84, 84), name
        assert isinstance(model.head, Detect) and model.stride.tolist() == [8.0, 16.0, 32.0]
        if name in PUBLISHED_PARAMS:
            assert sum(p.numel() for p in model.parameters()) == PUBLISHED_PARAMS[name]
        if family != "yolov8":
            assert isinstance(model.model[2].m[0], C3k) == (scale in "mlx")
        del model
