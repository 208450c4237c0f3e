"""YOLOv5 checkpoint import without the AGPL file: yolokit-built YOLOv5 models written as yolov5-repository-style
pickles (inert records under the original's global names: ``models.yolo.Model``, ``models.common.C3``, ...), read
back by the restricted unpickler, rebuilt and compared output for output."""

from __future__ import annotations

import os
import pathlib

import pytest
import torch
from foreign_helpers import Call, fake_torch_save, module
from torch import nn

from yolokit.errors import UnsafeWeightsError, WeightsError
from yolokit.models.builder import build_model
from yolokit.nn.conv import Concat, Conv
from yolokit.nn.yolov5 import C3, SPP, SPPF5, AnchorDetect, Bottleneck5, BottleneckCSP, Focus
from yolokit.weights import detect_format, load_model, read_weights

ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
P6_ANCHORS = [[19, 27, 44, 40, 38, 94], [96, 68, 86, 152, 180, 137], [140, 301, 303, 264, 238, 542],
              [436, 615, 739, 380, 925, 792]]
_HEAD = [[-1, 1, "Conv", [64, 1, 1]], [-1, 1, "nn.Upsample", ["None", 2, "nearest"]], [[-1, 4], 1, "Concat", [1]],
         [-1, 1, "{csp}", [64, False]], [-1, 1, "Conv", [64, 3, 2]], [[-1, 6], 1, "Concat", [1]],
         [-1, 1, "{csp}", [128, False]], [[10, 13], 1, "Detect", ["nc", "anchors"]]]


def tiny_spec(release: str = "v6", nc: int = 3) -> dict:
    """A 2-level tiny YOLOv5 spec per release: v6 (6x6 stem, C3, SPPF), v5 (Focus, C3, SPP), v3 (Focus,
    BottleneckCSP, SPP); width 1/8, strides 8 and 16."""
    csp = "BottleneckCSP" if release == "v3" else "C3"
    stem = [-1, 1, "Conv", [64, 6, 2, 2]] if release == "v6" else [-1, 1, "Focus", [64, 3]]
    pool = [-1, 1, "SPPF", [256, 5]] if release == "v6" else [-1, 1, "SPP", [256, [5, 9, 13]]]
    backbone = [stem, [-1, 1, "Conv", [128, 3, 2]], [-1, 3, csp, [128]], [-1, 1, "Conv", [128, 3, 2]],
                [-1, 2, csp, [128]], [-1, 1, "Conv", [256, 3, 2]], pool]
    head = [[r[0], r[1], csp if r[2] == "{csp}" else r[2], r[3]] for r in _HEAD]
    return {"nc": nc, "depth_multiple": 0.33, "width_multiple": 0.125, "anchors": ANCHORS[:2],
            "backbone": backbone, "head": head}


def p6_spec(nc: int = 2) -> dict:
    """A tiny 4-level (P3-P6, strides 8-64) v6-style spec."""
    backbone = [[-1, 1, "Conv", [32, 6, 2, 2]], [-1, 1, "Conv", [32, 3, 2]], [-1, 1, "C3", [32]],
                [-1, 1, "Conv", [64, 3, 2]], [-1, 1, "C3", [64]], [-1, 1, "Conv", [64, 3, 2]], [-1, 1, "C3", [64]],
                [-1, 1, "Conv", [128, 3, 2]], [-1, 1, "C3", [128]], [-1, 1, "Conv", [128, 3, 2]],
                [-1, 1, "SPPF", [128, 5]]]
    head = [[-1, 1, "nn.Upsample", ["None", 2, "nearest"]], [[-1, 8], 1, "Concat", [1]], [-1, 1, "C3", [128, False]],
            [-1, 1, "nn.Upsample", ["None", 2, "nearest"]], [[-1, 6], 1, "Concat", [1]], [-1, 1, "C3", [64, False]],
            [-1, 1, "nn.Upsample", ["None", 2, "nearest"]], [[-1, 4], 1, "Concat", [1]], [-1, 1, "C3", [64, False]],
            [[19, 16, 13, 10], 1, "Detect", ["nc", "anchors"]]]
    return {"nc": nc, "depth_multiple": 1.0, "width_multiple": 0.25, "anchors": P6_ANCHORS, "backbone": backbone,
            "head": head}


pytestmark = pytest.mark.usefixtures("one_thread")


_V5_NAMES = {Conv: "Conv", Bottleneck5: "Bottleneck", C3: "C3", BottleneckCSP: "BottleneckCSP", SPP: "SPP",
             SPPF5: "SPPF", Focus: "Focus", Concat: "Concat"}


def _tensor(t: torch.Tensor, half: bool) -> torch.Tensor:
    return t.detach().half() if half and t.is_floating_point() else t.detach().clone()


def _record(mod: nn.Module, cache: dict, half: bool, anchor_grid: bool) -> object:
    """``mod`` as a pickled module record under the original's global name (shared modules stay shared)."""
    if id(mod) in cache:
        return cache[id(mod)]
    if isinstance(mod, AnchorDetect):
        where = ("models.yolo", "Detect")
    elif type(mod) in _V5_NAMES:
        where = ("models.common", _V5_NAMES[type(mod)])
    else:
        where = (type(mod).__module__, type(mod).__name__)
    params = {k: None if v is None else nn.Parameter(_tensor(v, half), requires_grad=False)
              for k, v in mod._parameters.items()}
    buffers = {k: _tensor(v, half) for k, v in mod._buffers.items()}
    attrs = {k: getattr(mod, k) for k in ("eps", "momentum", "negative_slope", "i", "f", "type", "d", "add")
             if k in vars(mod)}
    if isinstance(mod, AnchorDetect):
        attrs.update(nc=mod.nc, no=mod.no, nl=mod.nl, na=mod.na, stride=mod.stride.clone(), inplace=True,
                     grid=[torch.zeros(1)] * mod.nl)
        if anchor_grid:  # v5.0 and older: a persistent buffer (nl, 1, na, 1, 1, 2) = anchors * stride
            buffers["anchor_grid"] = _tensor((mod.anchors * mod.stride.view(-1, 1, 1)).view(mod.nl, 1, -1, 1, 1, 2),
                                             half)
        else:
            attrs["anchor_grid"] = [torch.zeros(1)] * mod.nl
    if "type" in attrs:
        attrs["type"] = f"{where[0]}.{where[1]}"
    children = {k: None if c is None else _record(c, cache, half, anchor_grid) for k, c in mod._modules.items()}
    cache[id(mod)] = module(*where, params=params, buffers=buffers, children=children, **attrs)
    return cache[id(mod)]


def write_v5_checkpoint(model: nn.Module, path: pathlib.Path, yaml: dict, *, model_class: str = "Model",
                        names_as_list: bool = True, anchor_grid: bool = False, half: bool = True,
                        ema: nn.Module | None = None, extra: dict | None = None,
                        model_attrs: dict | None = None) -> pathlib.Path:
    """A yolov5-repository-style ``.pt``: ``{epoch, model, ema, optimizer, date, ...}`` with the model pickled as
    records (``models.yolo.<model_class>`` -> ``nn.Sequential`` of ``models.common`` layers -> ``Detect``)."""

    def whole(m: nn.Module) -> object:
        seq = _record(m.model, {}, half, anchor_grid)
        names = [m.names[i] for i in range(m.nc)] if names_as_list else dict(m.names)
        return module("models.yolo", model_class, children={"model": seq}, yaml=yaml, yaml_file="yolov5t.yaml",
                      names=names, nc=m.nc, stride=m.stride.clone(), save=sorted(m._saved), inplace=True,
                      **{"hyp": {"box": 0.05, "anchor_t": 4.0}, **(model_attrs or {})})

    ckpt = {"epoch": -1, "best_fitness": None, "model": whole(model), "ema": None if ema is None else whole(ema),
            "updates": None, "optimizer": None, "date": "2021-04-12T10:00:00", **(extra or {})}
    return fake_torch_save(ckpt, path)


def source_model(spec: dict, seed: int = 0, names: dict | None = None) -> nn.Module:
    """A built YOLOv5 model with perturbed BN, its weights rounded to fp16 (so a half checkpoint is exact)."""
    from conftest import randomise_batchnorm, round_to_fp16

    torch.manual_seed(seed)
    model = build_model(spec)
    randomise_batchnorm(model, seed)
    round_to_fp16(model)
    model.names = names or {i: f"class{i}" for i in range(model.nc)}
    return model.eval()


def _same_outputs(a: nn.Module, b: nn.Module, shape: tuple[int, int] = (96, 64)) -> None:
    x = torch.rand(2, 3, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, found = a.eval()(x), b.eval()(x)
    assert found.shape == expected.shape
    torch.testing.assert_close(found, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(("release", "model_class", "expected"), [
    ("v6", "Model", "v6.0-v6.1"), ("v6", "DetectionModel", "v6.2-v7.0"), ("v5", "Model", "v4.0-v5.0"),
    ("v3", "Model", "v1.0-v2.0"), ("v3.1", "Model", "v3.0-v3.1"),
])
def test_synthetic_checkpoints_round_trip(tmp_path: pathlib.Path, release: str, model_class: str,
                                          expected: str) -> None:
    spec = tiny_spec(release[:2])
    if release == "v3":
        spec["activation"] = "LeakyReLU(0.1)"
    elif release == "v3.1":  # v3.0+: Hardswish in Conv, BottleneckCSP's own activation still LeakyReLU(0.1)
        spec.update(activation="Hardswish", csp_activation="LeakyReLU(0.1)")
    source = source_model(spec, names={0: "cat", 1: "dog", 2: "bird"})
    yaml = {k: v for k, v in spec.items() if k not in ("activation", "csp_activation")}
    path = write_v5_checkpoint(source, tmp_path / f"{release}.pt", yaml, model_class=model_class,
                               names_as_list=release != "v6", anchor_grid=release != "v6")
    assert detect_format(path) == "yolov5-pt"
    weights = read_weights(path)
    assert all(t.dtype in (torch.float32, torch.int64) for t in weights.state_dict.values())
    assert not any(k.endswith("anchor_grid") for k in weights.state_dict)
    meta = weights.metadata
    assert meta["names"] == {0: "cat", 1: "dog", 2: "bird"} and meta["stride"] == [8, 16]
    assert meta["provenance"]["source"] == "yolov5" and meta["provenance"]["release"] == expected
    assert meta["spec"]["activation"] == spec.get("activation", "SiLU")
    if release.startswith("v3"):
        assert meta["spec"]["csp_activation"] == "LeakyReLU(0.1)"
    loaded = load_model(path)
    assert type(loaded).__name__ == "YOLOv5Model" and loaded.names == source.names
    _same_outputs(source, loaded)


def test_anchors_come_from_the_checkpoint_not_the_yaml(tmp_path: pathlib.Path) -> None:
    spec = tiny_spec("v6")
    source = source_model(spec)
    with torch.no_grad():  # what AutoAnchor does: other anchors than the YAML's (grid units, fp16-exact)
        source.head.anchors.mul_(torch.tensor([[1.25, 0.75]])).copy_(source.head.anchors.half().float())
    path = write_v5_checkpoint(source, tmp_path / "autoanchor.pt", spec)
    loaded = load_model(path)
    torch.testing.assert_close(loaded.head.anchors, source.head.anchors)
    expected_px = (source.head.anchors * source.stride.view(-1, 1, 1)).flatten(1).tolist()
    assert loaded.spec["anchors"] == expected_px  # exact: fp16 grid units times a power of two
    _same_outputs(source, loaded)


def test_p6_checkpoint_has_four_levels(tmp_path: pathlib.Path) -> None:
    source = source_model(p6_spec())
    assert source.stride.tolist() == [8, 16, 32, 64]
    path = write_v5_checkpoint(source, tmp_path / "p6.pt", p6_spec(), model_class="DetectionModel")
    loaded = load_model(path)
    assert loaded.head.nl == 4 and loaded.stride.tolist() == [8, 16, 32, 64]
    assert "P6" in loaded.metadata["provenance"]["layers"]
    _same_outputs(source, loaded, (128, 64))


def test_ema_entry_is_preferred_and_shared_activation_kept(tmp_path: pathlib.Path) -> None:
    spec = {**tiny_spec("v6"), "shared_activation": True}
    model, ema = source_model(spec, seed=1), source_model(spec, seed=2)
    path = write_v5_checkpoint(model, tmp_path / "last.pt", tiny_spec("v6"), ema=ema, half=False,
                               extra={"optimizer": {"state": {}, "param_groups": [{"lr": 0.01}]}, "updates": 10})
    loaded = load_model(path)
    assert loaded.spec["shared_activation"] is True
    _same_outputs(ema, loaded)
    convs = [m for m in loaded.modules() if isinstance(m, Conv)]
    assert len({id(c.act) for c in convs}) == 1  # one instance, as the v6.2+ original: its layer count


def test_third_party_single_class_fp32_unstripped_checkpoint(tmp_path: pathlib.Path) -> None:
    """A user's v5.0-era ``last.pt``: one class (names a list), fp32 tensors, not stripped (optimizer, EMA, epoch),
    ``opt`` an ``argparse.Namespace``, the training attributes train.py sets on the model."""
    import argparse

    from yolokit import YOLO

    spec = tiny_spec("v5", nc=1)
    model, ema = source_model(spec, seed=3, names={0: "widget"}), source_model(spec, seed=4, names={0: "widget"})
    opt = argparse.Namespace(img_size=[320, 320], epochs=50, data="widgets.yaml", single_cls=False)
    path = write_v5_checkpoint(model, tmp_path / "last.pt", spec, ema=ema, half=False, anchor_grid=True, extra={
        "epoch": 41, "optimizer": {"state": {}, "param_groups": [{"lr": 0.002}]}, "updates": 4100, "opt": opt,
        "training_results": "   0/49  ...", "wandb_id": None}, model_attrs={
        "gr": 1.0, "class_weights": torch.ones(1), "hyp": {"box": 0.05, "cls": 0.5, "anchor_t": 4.0}})
    weights = read_weights(path)
    meta = weights.metadata
    assert meta["names"] == {0: "widget"} and meta["spec"]["nc"] == 1 and meta["imgsz"] == 320
    assert meta["provenance"]["epoch"] == 41 and meta["provenance"]["train_args"]["data"] == "widgets.yaml"
    assert meta["provenance"]["release"] == "v4.0-v5.0"
    loaded = YOLO(path)
    _same_outputs(ema, loaded.model)  # the EMA weights, as the original's loaders take
    image = (torch.rand(64, 96, 3, generator=torch.Generator().manual_seed(5)) * 255).to(torch.uint8).numpy()
    result = loaded.predict(image, imgsz=64, conf=0.0, verbose=False)[0]
    assert result.boxes.cls.unique().tolist() in ([], [0.0]) and result.names == {0: "widget"}


def test_third_party_v7_checkpoint_with_only_an_ema_entry(tmp_path: pathlib.Path) -> None:
    """A v7.0 ``DetectionModel`` file with 7 classes as a dict, ``model`` None and the weights in ``ema`` (fp16),
    ``opt`` a dict, a ``git`` entry."""
    names = {i: n for i, n in enumerate(("car", "van", "truck", "bus", "bike", "person", "sign"))}
    spec = tiny_spec("v6", nc=7)
    ema = source_model(spec, seed=6, names=names)
    path = write_v5_checkpoint(ema, tmp_path / "best.pt", spec, model_class="DetectionModel", names_as_list=False,
                               ema=ema, extra={"model": None, "opt": {"imgsz": 416, "epochs": 3},
                                               "git": {"remote": "", "branch": "master", "commit": "abc1234"}})
    meta = read_weights(path).metadata
    assert meta["names"] == names and meta["imgsz"] == 416 and meta["provenance"]["release"] == "v6.2-v7.0"
    loaded = load_model(path)
    assert loaded.nc == 7 and loaded.head.no == 12
    _same_outputs(ema, loaded)
    empty = write_v5_checkpoint(ema, tmp_path / "empty.pt", spec, extra={"model": None})  # and no ema: no model
    with pytest.raises(WeightsError, match="unrecognised weights file") as exc:
        load_model(empty)
    assert "\n" not in str(exc.value)


def test_unsafe_global_inside_a_yolov5_file_is_refused(tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "MARKER"
    source = source_model(tiny_spec("v6"))
    path = write_v5_checkpoint(source, tmp_path / "evil.pt", tiny_spec("v6"),
                               extra={"opt": {"x": Call(os.system, (f"touch {marker}",))}})
    with pytest.raises(UnsafeWeightsError, match="posix.system"):
        load_model(path)
    assert not marker.exists()


@pytest.mark.parametrize(("extra", "words"), [
    (("models.common", "C3TR"), "models.common.C3TR"), (("models.yolo", "Segment"), "segmentation or classification"),
])
def test_yolov5_layers_yolokit_lacks_are_named(tmp_path: pathlib.Path, extra: tuple, words: str) -> None:
    child = module(*extra)
    obj = {"model": module("models.yolo", "Model", children={"model": module(
        "torch.nn.modules.container", "Sequential", children={"0": child})})}
    path = fake_torch_save(obj, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match=words) as exc:
        load_model(path)
    assert not isinstance(exc.value, UnsafeWeightsError) and "\n" not in str(exc.value)


def test_a_yolov5_model_class_without_layers_is_refused_in_one_line(tmp_path: pathlib.Path) -> None:
    path = fake_torch_save({"model": module("models.yolo", "Model")}, tmp_path / "empty.pt")
    with pytest.raises(WeightsError, match="holds no layer Sequential") as exc:
        read_weights(path)
    assert "\n" not in str(exc.value)


def test_inspect_names_the_release_and_converted_file_keeps_it(tmp_path: pathlib.Path) -> None:
    from yolokit.weights import save_weights
    from yolokit.weights.inspect import format_inspect, inspect_weights

    source = source_model(tiny_spec("v5"))
    path = write_v5_checkpoint(source, tmp_path / "v5.pt", tiny_spec("v5"))
    report = inspect_weights(path)
    assert report["format"] == "yolov5-pt" and report["safety"]["verdict"] == "safe"
    assert report["dtypes"]["float16"] > 0 and report["architecture"]["family"] == "yolov5"
    assert report["origin"] == "YOLOv5 checkpoint, release v4.0-v5.0 (Focus stem, C3, SPP, SiLU; dated 2021-04-12)"
    assert "Origin      YOLOv5 checkpoint, release v4.0-v5.0" in format_inspect(report)
    assert report["parameters"] == sum(p.numel() for p in source.parameters())
    converted = save_weights(load_model(path), tmp_path / "v5.safetensors")
    assert detect_format(converted) == "safetensors"
    assert inspect_weights(converted)["origin"] == report["origin"]
    _same_outputs(source, load_model(converted))


def test_fused_model_counts_like_the_original() -> None:
    model = build_model("yolov5n.yaml")
    layers, params, _, gflops = model.info(verbose=False)
    assert (layers, params, round(gflops, 1)) == (270, 1872157, 4.6)
    layers, params, _, gflops = model.fuse().info(verbose=False)
    assert (layers, params, round(gflops, 1)) == (213, 1867405, 4.5)


def test_detect_format_does_not_unpickle(tmp_path: pathlib.Path) -> None:
    """The format is told from the opcode walk: a v5 file naming an unknown class is reported by name."""
    obj = {"model": module("models.yolo", "Model", children={"x": module("models.experimental", "MixConv2d")})}
    path = fake_torch_save(obj, tmp_path / "mix.pt")
    with pytest.raises(WeightsError, match="models.experimental.MixConv2d"):
        detect_format(path)


def test_layers_outside_yolokits_and_fused_models_are_refused_naming_them(tmp_path: pathlib.Path) -> None:
    spec = {**tiny_spec("v3"), "activation": "LeakyReLU(0.1)"}
    source = source_model(spec)
    yaml = tiny_spec("v3")  # a v1.0-style head: output convs as rows, Detect reading none
    yaml["head"] = [*yaml["head"][:-1], [-1, 1, "nn.Conv2d", ["na * (nc + 5)", 1, 1]], [[], 1, "Detect", ["nc"]]]
    path = write_v5_checkpoint(source, tmp_path / "v1.pt", yaml)
    with pytest.raises(WeightsError, match=r"release v1\.0-v2\.0 by its layers\) has layer 14 .*nn\.Conv2d") as exc:
        load_model(path)
    assert "\n" not in str(exc.value)
    fused = write_v5_checkpoint(source_model(tiny_spec("v6")).fuse(), tmp_path / "fused.pt", tiny_spec("v6"))
    with pytest.raises(WeightsError, match="fused model"):
        load_model(fused)
