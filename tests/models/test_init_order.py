"""A model built under a seed starts from the reference's initial weights for that seed, layer for layer.

The reference's fixtures ``F-tiny-random.pt`` were written from its random initialisation under torch seed 0 (conv
weights stored in fp16; only BatchNorm was perturbed afterwards). yolokit's constructors draw from torch's
generator in the same order (``nn.conv.draw_like_reference``: C3k also draws the C3 bottlenecks the reference
builds and replaces), so the same seed gives the same conv weights: from-scratch runs of the two start alike.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from yolokit.models.builder import build_model
from yolokit.models.spec import load_spec
from yolokit.weights import read_weights

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REFERENCE_FULL = Path(os.environ.get("YOLOKIT_REFERENCE_FULL", "/work/shared/fixtures/reference-full"))


def _differing_conv_weights(spec: str | Path, reference: Path, num_classes: int) -> list[str]:
    """Conv weights (4-D) of a model built under seed 0 that differ from ``reference``'s (compared in fp16)."""
    stored = read_weights(reference).state_dict
    torch.manual_seed(0)
    model = build_model(load_spec(spec), num_classes=num_classes)
    built = {k: v for k, v in model.state_dict().items() if k.endswith("weight") and v.ndim == 4}
    assert len(built) > 50
    return [k for k, v in built.items() if not torch.equal(v.half(), stored[k].half())]


@pytest.mark.parametrize("family", ["yolov8", "yolo11", "yolo26"])
def test_seed_0_gives_the_reference_initial_conv_weights(family: str) -> None:
    differing = _differing_conv_weights(FIXTURES / f"{family}-tiny.yaml", FIXTURES / f"{family}-tiny-random.pt", 3)
    assert differing == []


@pytest.mark.parametrize("name", ["yolov8n", "yolo11n", "yolo26n"])
def test_seed_0_gives_the_reference_initial_weights_at_full_size(name: str) -> None:
    path = REFERENCE_FULL / f"{name}-random.pt"
    if not path.is_file():
        pytest.skip(f"{path} absent (reference-full fixtures)")
    assert _differing_conv_weights(f"{name}.yaml", path, 80) == []


def test_another_seed_gives_other_weights() -> None:
    torch.manual_seed(1)
    other = build_model(load_spec(FIXTURES / "yolo11-tiny.yaml"), num_classes=3).state_dict()
    stored = read_weights(FIXTURES / "yolo11-tiny-random.pt").state_dict
    assert not torch.equal(other["model.0.conv.weight"].half(), stored["model.0.conv.weight"].half())
