"""Third-party reference -cls checkpoints not seen before: yolokit-built classifiers written as reference-style
pickles (inert records under the reference's global names) with other class counts, the layouts of older 8.x
releases (flat ``ultralytics.nn.modules`` names, ``ultralytics.yolo.*`` transform and namespace modules, the
reference's own ``CenterCrop`` / ``ToTensor``) and of newer ones (torchvision ``Resize`` with an interpolation
mode, ImageNet normalisation); read back, compared output for output, the recorded transform applied."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import torch
from foreign_helpers import Obj, fake_torch_save, module
from torch import nn

from yolokit import YOLO
from yolokit.data.classify_transforms import eval_crop
from yolokit.data.image import read_image
from yolokit.models.classifier import build_classifier
from yolokit.models.spec import load_spec
from yolokit.weights import detect_format

CLS = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "cls"
IMAGE = CLS / "wide.jpg"
_SUBMODULE = {"Conv": "conv", "C2f": "block", "Bottleneck": "block", "C3k2": "block", "C3k": "block",
              "C2PSA": "block", "PSABlock": "block", "Attention": "block", "Classify": "head"}
TV = "torchvision.transforms.transforms"


pytestmark = pytest.mark.usefixtures("one_thread")


def _where(mod: nn.Module, flat: bool) -> tuple[str, str]:
    name = type(mod).__name__
    if name in _SUBMODULE:  # yolokit's layers under the reference's module paths (8.0.x before the split: flat)
        return ("ultralytics.nn.modules" if flat else f"ultralytics.nn.modules.{_SUBMODULE[name]}", name)
    return type(mod).__module__, name


def _record(mod: nn.Module, flat: bool, eps: float | None) -> Obj:
    """``mod`` as a pickled module record: fp16 tensors, the attributes torch layers carry."""
    params = {k: None if v is None else nn.Parameter(v.detach().half(), requires_grad=False)
              for k, v in mod._parameters.items()}
    buffers = {k: v.detach().half() if v.is_floating_point() else v.detach().clone() for k, v in mod._buffers.items()}
    attrs = {k: getattr(mod, k) for k in ("momentum", "negative_slope", "p", "inplace") if k in vars(mod)}
    if isinstance(mod, nn.BatchNorm2d):
        attrs["eps"] = mod.eps if eps is None else eps
    children = {k: None if c is None else _record(c, flat, eps) for k, c in mod._modules.items()}
    return module(*_where(mod, flat), params=params, buffers=buffers, children=children, **attrs)


def write_cls_checkpoint(model: nn.Module, path: pathlib.Path, spec: dict, *, transforms: Obj | None,
                         flat: bool = False, args: object = None, eps: float | None = None,
                         version: str = "8.3.40") -> pathlib.Path:
    """A reference-style ``.pt``: ``{model: ClassificationModel(Sequential(...)), ema, train_args, ...}``."""
    seq = _record(model.model, flat, eps)
    attrs = {"yaml": spec, "names": dict(model.names), "stride": torch.tensor([1.0]), "save": [], "args": args}
    if transforms is not None:
        attrs["transforms"] = transforms
    root = module("ultralytics.nn.tasks", "ClassificationModel", children={"model": seq}, **attrs)
    ckpt = {"epoch": -1, "best_fitness": None, "model": root, "ema": None, "updates": None, "optimizer": None,
            "train_args": args, "date": "2023-03-01T10:00:00", "version": version}
    return fake_torch_save(ckpt, path)


def source_classifier(family: str, nc: int, seed: int) -> nn.Module:
    """The fixture spec of ``family`` with ``nc`` classes, perturbed BN, weights rounded to fp16 (exact in a half
    checkpoint)."""
    from conftest import randomise_batchnorm, round_to_fp16

    spec = {k: v for k, v in load_spec(CLS / f"{family}-cls-tiny.yaml").items() if k != "yaml_file"}
    torch.manual_seed(seed)
    model = build_classifier({**spec, "nc": nc})
    randomise_batchnorm(model, seed)
    round_to_fp16(model)
    model.names = {i: f"kind{i}" for i in range(nc)}
    return model.eval()


def _same_probs(source: nn.Module, loaded: nn.Module) -> None:
    x = torch.rand(2, 3, 64, 80, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected, found = source(x), loaded.eval()(x)
    assert found.shape == expected.shape and (found - expected).abs().max() <= 1e-4


def test_an_8_0_era_checkpoint_with_flat_module_names_and_its_own_transforms(tmp_path: pathlib.Path) -> None:
    """Before 8.0.90 the layers lived in one ``ultralytics.nn.modules`` module, the transforms and namespaces in
    ``ultralytics.yolo.*``; 10 classes, train args an ``IterableSimpleNamespace``, the 8.0.x square centre crop."""
    source = source_classifier("yolov8", 10, seed=1)
    augment = "ultralytics.yolo.data.augment"
    transforms = module(TV, "Compose", transforms=[
        module(augment, "CenterCrop", h=64, w=64), module(augment, "ToTensor", half=False),
        module(TV, "Normalize", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), inplace=False)])
    args = Obj(_fake("ultralytics.yolo.utils", "IterableSimpleNamespace"), {"task": "classify", "imgsz": 64,
                                                                          "data": "parts10", "epochs": 30})
    path = write_cls_checkpoint(source, tmp_path / "old.pt", load_spec(CLS / "yolov8-cls-tiny.yaml"),
                                transforms=transforms, flat=True, args=args, version="8.0.20")
    assert detect_format(path) == "ultralytics-pt"
    model = YOLO(path)
    assert model.task == "classify" and model.names == source.names and model.model.nc == 10
    meta = model.metadata
    assert meta["imgsz"] == 64 and meta["provenance"]["train_args"]["data"] == "parts10"
    assert meta["classify_transforms"]["square_crop"] is True and meta["classify_transforms"]["crop"] == 64
    _same_probs(source, model.model)
    probs = model.predict(str(IMAGE), verbose=False)[0].probs.data
    crop = eval_crop(read_image(IMAGE), 64, square_crop=True)  # the 8.0.x crop: centre square, then resize
    with torch.no_grad():
        want = source(torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255)[0]
    assert probs.shape == (10,) and (probs - want).abs().max() <= 1e-4


def _fake(module_path: str, name: str):
    from foreign_helpers import Fake

    return Fake(module_path, name)


def test_a_newer_checkpoint_with_imagenet_normalisation_bicubic_resize_and_other_eps(tmp_path: pathlib.Path) -> None:
    """A yolo11-cls with 7 classes trained elsewhere: torchvision ``Resize(80, bicubic)`` + ``CenterCrop(64)`` +
    ImageNet ``Normalize``, BatchNorm eps 1e-3 in its records."""
    source = source_classifier("yolo11", 7, seed=2)
    for bn in source.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.eps = 1e-3
    transforms = module(TV, "Compose", transforms=[
        module(TV, "Resize", size=80, interpolation=_bicubic(), max_size=None, antialias=True),
        module(TV, "CenterCrop", size=(64, 64)), module(TV, "ToTensor"),
        module(TV, "Normalize", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), inplace=False)])
    path = write_cls_checkpoint(source, tmp_path / "new.pt", load_spec(CLS / "yolo11-cls-tiny.yaml"),
                                transforms=transforms, args={"task": "classify", "imgsz": 64}, eps=1e-3)
    model = YOLO(path)
    assert model.model.spec["bn_eps"] == pytest.approx(1e-3) and model.model.nc == 7
    assert model.metadata["classify_transforms"] == {
        "ops": ["Resize", "CenterCrop", "ToTensor", "Normalize"], "resize": 80, "interpolation": "bicubic",
        "crop": 64, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    _same_probs(source, model.model)
    probs = model.predict(str(IMAGE), verbose=False)[0].probs.data
    crop = eval_crop(read_image(IMAGE), 64, resize=80, interpolation="bicubic")
    x = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    x = (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    with torch.no_grad():
        want = source(x)[0]
    assert probs.shape == (7,) and (probs - want).abs().max() <= 1e-4
    assert int(np.argmax(probs.numpy())) == int(want.argmax())


def _bicubic() -> Obj:
    """``InterpolationMode.BICUBIC`` as pickled: the enum class called with its value."""
    from foreign_helpers import Call

    return Call(_fake("torchvision.transforms.functional", "InterpolationMode"), ("bicubic",))


def test_flat_module_names_map_only_to_allowed_layers() -> None:
    from yolokit.weights.foreign import is_allowed

    assert is_allowed("ultralytics.nn.modules", "Classify") and is_allowed("ultralytics.nn.modules", "C2f")
    assert not is_allowed("ultralytics.nn.modules", "system") and not is_allowed("ultralytics.nn.modules", "Lambda")
