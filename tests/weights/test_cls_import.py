"""Reference -cls checkpoints: imported without running anything, transforms as inert records, reference outputs."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from yolokit import YOLO
from yolokit.data.classify_transforms import eval_crop
from yolokit.data.image import read_image
from yolokit.weights._foreign_globals import ModuleRecord
from yolokit.weights._foreign_transforms import batchnorm_eps, transform_metadata
from yolokit.weights.foreign import is_allowed, load_checkpoint, scan_globals

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CLS = FIXTURES / "cls"
IMAGES = [CLS / "wide.jpg", CLS / "tall.jpg", FIXTURES / "images" / "00000.jpg"]
FAMILIES = ["yolov8", "yolo11"]
TRANSFORM_GLOBALS = {"torchvision.transforms.transforms." + n for n in ("Compose", "Resize", "CenterCrop", "ToTensor",
                                                                       "Normalize")}


def checkpoint(family: str) -> Path:
    return CLS / f"{family}-cls-tiny-random.pt"


def expected(family: str) -> dict[str, np.ndarray]:
    return dict(np.load(CLS / f"{family}-cls-tiny-random-io.npz"))


@pytest.mark.parametrize("family", FAMILIES)
def test_every_global_is_allowed_and_transforms_become_records(family):
    refs = {r.resolved: r.allowed for r in scan_globals(checkpoint(family))}
    assert TRANSFORM_GLOBALS | {"torchvision.transforms.functional.InterpolationMode"} <= set(refs)
    assert all(refs.values())
    ckpt = load_checkpoint(checkpoint(family))
    transforms = ckpt["model"].attributes["transforms"]
    assert isinstance(transforms, ModuleRecord) and transforms.type_name == "Compose"
    assert [op.type_name for op in transforms.attributes["transforms"]] == ["Resize", "CenterCrop", "ToTensor",
                                                                            "Normalize"]
    assert "torchvision" not in sys.modules  # nothing of torchvision was imported to read them


def test_other_torchvision_globals_stay_refused():
    assert not is_allowed("torchvision.transforms.transforms", "Lambda")
    assert not is_allowed("torchvision.transforms.functional", "resize")
    assert is_allowed("ultralytics.yolo.data.augment", "CenterCrop")  # the 8.0.x module name


@pytest.mark.parametrize("family", FAMILIES)
def test_metadata_records_task_names_and_eval_transform(family):
    model = YOLO(checkpoint(family))
    assert model.task == "classify" and type(model.model).__name__ == "ClassificationModel"
    assert model.names == {0: "ellipse", 1: "rectangle", 2: "triangle"}
    meta = model.metadata
    assert meta["imgsz"] == 64 and meta["stride"] == [1] and meta["provenance"]["source"] == "ultralytics"
    assert meta["classify_transforms"] == {"ops": ["Resize", "CenterCrop", "ToTensor", "Normalize"], "resize": 64,
                                           "interpolation": "bilinear", "crop": 64, "mean": [0.0, 0.0, 0.0],
                                           "std": [1.0, 1.0, 1.0]}
    assert "bn_eps" not in model.model.spec  # PyTorch's default eps, as the classifier's own
    assert {m.eps for m in model.model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {1e-5}


@pytest.mark.parametrize("family", FAMILIES)
def test_probabilities_on_a_fixed_input_equal_the_reference(family):
    model, ref = YOLO(checkpoint(family)).model, expected(family)
    with torch.no_grad():
        probs = model(torch.from_numpy(ref["x_u8"]).float() / 255)
    assert np.abs(probs.numpy() - ref["probs"]).max() <= 1e-4
    assert probs.argmax(1).tolist() == ref["probs"].argmax(1).tolist()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("engine", ["eager", "auto"])
def test_predict_on_image_files_equals_the_reference_pipeline(family, engine):
    results = YOLO(checkpoint(family)).predict([str(p) for p in IMAGES], engine=engine, verbose=False)
    ref = expected(family)["image_probs"]
    probs = np.stack([r.probs.data.numpy() for r in results])
    assert np.abs(probs - ref).max() <= 1e-4  # decode + short-side resize + centre crop + model, imgsz 64 recorded
    assert [r.probs.top1 for r in results] == ref.argmax(1).tolist()


def test_eval_crop_is_pixel_exact_with_the_reference_transform():
    ref = np.load(CLS / "eval-transform.npz")
    for name in ("wide", "tall"):
        crop = eval_crop(read_image(CLS / f"{name}.jpg"), 64)
        assert np.array_equal(crop.transpose(2, 0, 1), ref[name])


def test_imported_classifier_round_trips_through_native_weights(tmp_path):
    model = YOLO(checkpoint("yolo11"))
    path = model.save(tmp_path / "cls.safetensors")
    again = YOLO(path)
    assert again.task == "classify" and again.metadata["classify_transforms"]["crop"] == 64
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(again.model(x), model.model.eval()(x))


def _record(module: str, name: str, **attributes) -> ModuleRecord:
    record = ModuleRecord(module, name)
    record.attributes.update(attributes)
    return record


def test_transform_metadata_of_other_reference_versions(caplog):
    tv, ul = "torchvision.transforms.transforms", "ultralytics.data.augment"
    old = _record(tv, "Compose", transforms=[_record(ul, "CenterCrop", h=224, w=224), _record(ul, "ToTensor"),
                                             _record(tv, "Normalize", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))])
    assert transform_metadata(old) == {"ops": ["CenterCrop", "ToTensor", "Normalize"], "crop": 224,
                                       "square_crop": True, "mean": [0.5] * 3, "std": [0.25] * 3}
    mode = ModuleRecord("torchvision.transforms.functional", "InterpolationMode", ("bicubic",))
    resized = _record(tv, "Compose", transforms=[_record(tv, "Resize", size=[256], interpolation=mode),
                                                 _record(tv, "CenterCrop", size=(224, 224))])
    assert transform_metadata(resized) == {"ops": ["Resize", "CenterCrop"], "resize": 256,
                                           "interpolation": "bicubic", "crop": 224}
    assert transform_metadata(_record(tv, "Resize", size=32, interpolation=3))["interpolation"] == "bicubic"
    with caplog.at_level(logging.WARNING, logger="yolokit.weights._foreign_transforms"):
        meta = transform_metadata(_record(tv, "Compose", transforms=[_record(ul, "ClassifyLetterBox")]))
    assert meta["unsupported"] == ["ultralytics.data.augment.ClassifyLetterBox"] and "ClassifyLetterBox" in caplog.text
    assert transform_metadata(None) is None


def test_batchnorm_eps_is_read_from_the_records():
    bn = _record("torch.nn.modules.batchnorm", "BatchNorm2d", eps=0.001)
    conv = _record("ultralytics.nn.modules.conv", "Conv")
    conv.modules = {"bn": bn}
    root = _record("ultralytics.nn.tasks", "ClassificationModel")
    root.modules = {"model": conv}
    assert batchnorm_eps(root) == 0.001
    conv.modules["bn2"] = _record("torch.nn.modules.batchnorm", "BatchNorm2d", eps=1e-5)
    assert batchnorm_eps(root) is None  # they differ: no single value


def test_a_recorded_eps_is_used_by_the_classifier():
    from yolokit.models.classifier import build_classifier
    from yolokit.models.spec import load_spec

    spec = load_spec(CLS / "yolov8-cls-tiny.yaml")
    spec["bn_eps"] = 1e-3
    assert {m.eps for m in build_classifier(spec).modules() if isinstance(m, torch.nn.BatchNorm2d)} == {1e-3}


def test_recorded_normalisation_and_resize_are_applied():
    from yolokit.predict.classify import classify_preprocess

    image = read_image(CLS / "wide.jpg")
    meta = {"classify_transforms": {"resize": 80, "crop": 64, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}
    batch = classify_preprocess([image], 64, meta)
    plain = torch.from_numpy(eval_crop(image, 64, resize=80)).permute(2, 0, 1).float() / 255
    assert torch.allclose(batch[0], (plain - 0.5) / 0.25, atol=1e-6)
    assert torch.equal(classify_preprocess([image], 64)[0],
                       torch.from_numpy(eval_crop(image, 64)).permute(2, 0, 1).float() / 255)


PHOTOS_ROOT = Path(os.environ.get("YOLOKIT_YOLOV5_FIXTURES", "/nonexistent")).parent  # yolov5/, coco8/ beside it
PHOTOS = json.loads((CLS / "yolo11-cls-tiny-photos.json").read_text())


@pytest.mark.slow
@pytest.mark.skipif(not all((PHOTOS_ROOT / i["file"]).is_file() for i in PHOTOS["images"]),
                    reason="needs the shared yolov5/ and coco8/ fixtures (real photographs, not in the repository)")
def test_top1_and_probabilities_on_real_photographs_equal_the_reference():
    """A reference-written -cls checkpoint whose outputs are not saturated on photographs at 64 px (README), on
    bus.jpg, zidane.jpg and coco8's val images (JPEGs of 480-1080 px): the reference's probabilities and top-1 at
    imgsz 64, and at the default size, which both take from the file's train args (640, not the recorded crop)."""
    from yolokit.utils.io import sha256_file

    files = [PHOTOS_ROOT / i["file"] for i in PHOTOS["images"]]
    assert [sha256_file(f) for f in files] == [i["sha256"] for i in PHOTOS["images"]]
    assert sha256_file(CLS / "yolo11-cls-tiny-photos.pt") == PHOTOS["weights_sha256"]
    model = YOLO(CLS / "yolo11-cls-tiny-photos.pt")
    for key, imgsz in (("imgsz64", {"imgsz": 64}), ("default", {})):
        results = model.predict([str(f) for f in files], verbose=False, **imgsz)
        probs = np.stack([r.probs.data.numpy() for r in results])
        assert np.abs(probs - np.array([i[f"probs_{key}"] for i in PHOTOS["images"]])).max() <= 1e-4, key
        assert [r.probs.top1 for r in results] == [i[f"top1_{key}"] for i in PHOTOS["images"]]
    assert model.metadata["imgsz"] == PHOTOS["default_imgsz"][0] == 640
    assert len({i["top1_imgsz64"] for i in PHOTOS["images"]}) == 3  # every class wins somewhere: top-1 informs
