"""yolokit.model.settings: the imgsz the weights record, the note naming it, settings fitted to the model."""

import dataclasses

import pytest

from yolokit.errors import ConfigError
from yolokit.model.settings import defaults_note, fit_to_model, recorded_imgsz


@pytest.mark.parametrize(("imgsz", "square", "expected"), [
    (320, False, 320), (320.0, True, 320), ([480, 640], False, (480, 640)), ([480, 640], True, 640),
    ([256, 256], False, 256), ([256, 256, 3], False, 256), (None, False, None), ([], False, None),
    ("abc", False, None), ([1, "x"], True, None),
])
def test_recorded_imgsz(imgsz, square, expected):
    assert recorded_imgsz({} if imgsz is None else {"imgsz": imgsz}, square) == expected


def test_defaults_note_names_the_recorded_size_and_dataset():
    assert defaults_note({}) == "predict/val default imgsz=640 (yolokit's default: the weights record no size)"
    metadata = {"imgsz": [320, 320], "provenance": {"train_args": {"data": "d.yaml"}}}
    assert defaults_note(metadata) == ("predict/val default imgsz=320 (recorded in the weights), "
                                       "val data=d.yaml (recorded)")


@dataclasses.dataclass(frozen=True)
class _Settings:
    imgsz: int | tuple[int, int]
    device: str = "cpu"
    classes: tuple[int, ...] | None = None


def test_fit_to_model_rounds_imgsz_up_to_the_stride_and_checks_classes():
    names = {0: "cat", 1: "dog"}
    same = _Settings(imgsz=64)
    assert fit_to_model(same, names, 32) is same
    assert fit_to_model(_Settings(imgsz=65), names, 32).imgsz == 96
    assert fit_to_model(_Settings(imgsz=64, classes=(1,)), names, 32).classes == (1,)
    with pytest.raises(ConfigError, match=r"class ids of this model \(0..1\), got 2"):
        fit_to_model(_Settings(imgsz=64, classes=(2,)), names, 32)
    with pytest.raises(ConfigError, match="needs a CUDA GPU|cuda:0..cuda"):
        fit_to_model(_Settings(imgsz=64, device="cuda:99"), names, 32)
    assert fit_to_model(_Settings(imgsz=64, device="cuda:99"), names, 32, check_device=False).device == "cuda:99"
