"""Loss values equal to the reference implementation's (Ultralytics 8.4.190) on fixed random head outputs.

``fixtures/reference-loss-cases.npz`` holds, per case, random train-mode head outputs (B=4, a 64x96 input, 3
classes, images with 3, 0, 7 and 1 boxes of sizes from 2 px to most of the image) and the loss the reference's
``v8DetectionLoss`` (yolov8n, reg_max 16) or ``E2ELoss`` (yolo26n, reg_max 1, at epoch 0 and epoch 3 of 10)
returned for them, measured once in a separate environment with the reference installed. No reference code is here.
"""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from yolokit.losses import build_loss

CASES = Path(__file__).parent / "fixtures" / "reference-loss-cases.npz"


def _case(data, key):
    return {name.split("/", 1)[1]: data[name] for name in data.files if name.startswith(key + "/")}


def _branch(case, prefix=""):
    feats = [torch.zeros(4, 1, int(h), int(w)) for h, w in case["shapes"]]
    return {"boxes": torch.from_numpy(case[prefix + "boxes"]), "scores": torch.from_numpy(case[prefix + "scores"]),
            "feats": feats}


@pytest.mark.parametrize("key", ["v8_0", "v8_1", "y26_0", "y26_1"])
def test_loss_equals_the_reference(key):
    with np.load(CASES) as data:
        case = _case(data, key)
    end2end = key.startswith("y26")
    head = SimpleNamespace(nc=3, reg_max=1 if end2end else 16, stride=torch.tensor([8.0, 16.0, 32.0]), end2end=end2end)
    loss = build_loss(head)
    batch = {k: torch.from_numpy(case[k]) for k in ("cls", "bboxes", "batch_idx")}
    preds = {"one2many": _branch(case), "one2one": _branch(case, "o2o_")} if end2end else _branch(case)
    if end2end:
        loss.set_progress(0, 10)
    total, items = loss(preds, batch)
    torch.testing.assert_close(items.double(), torch.from_numpy(case["ref_items"]), rtol=1e-5, atol=1e-6)
    assert total.item() == pytest.approx(float(case["ref_total"]), rel=1e-5)
    if end2end:
        loss.set_progress(3, 10)
        assert loss(preds, batch)[0].item() == pytest.approx(float(case["ref_total_epoch3"]), rel=1e-5)
