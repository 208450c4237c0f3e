"""The losses on real (tiny) models: gradients reach the parameters, and one batch can be overfitted."""

from pathlib import Path

import pytest
import torch

from yolokit.losses import DetectionLoss, E2EDetectionLoss, build_loss
from yolokit.models.builder import build_model

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(family: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(FIXTURES / f"{family}-tiny.yaml", num_classes=2).train()


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return {
        "img": (torch.rand(2, 3, 64, 64, generator=g) * 255).to(torch.uint8),
        "cls": torch.tensor([[0.0], [1.0], [1.0]]),
        "bboxes": torch.tensor([[0.3, 0.3, 0.4, 0.3], [0.7, 0.6, 0.3, 0.5], [0.5, 0.5, 0.6, 0.6]]),
        "batch_idx": torch.tensor([0.0, 0.0, 1.0]),
    }


@pytest.mark.parametrize(("family", "kind"), [("yolov8", DetectionLoss), ("yolo26", E2EDetectionLoss)])
def test_total_loss_backpropagates_into_the_parameters(family, kind):
    model = _model(family)
    loss = build_loss(model)
    assert isinstance(loss, kind)
    batch = _batch()
    total, items = loss(model(batch["img"].float() / 255), batch)
    assert total.ndim == 0 and items.shape == (3,) and not items.requires_grad
    assert torch.isfinite(items).all() and (items > 0).all()
    total.backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    first, head = "model.0.conv.weight", len(model.model) - 1
    assert grads[first].abs().sum() > 0  # reaches the stem
    for branch in ("cv2", "cv3") + (("one2one_cv2", "one2one_cv3") if family == "yolo26" else ()):
        assert grads[f"model.{head}.{branch}.0.2.weight"].abs().sum() > 0


@pytest.mark.parametrize("family", ["yolov8", "yolo26"])
def test_one_batch_is_overfitted_in_30_sgd_steps(family):
    model = _model(family, seed=0)
    loss = build_loss(model)
    batch = _batch(0)
    images = batch["img"].float() / 255
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    history = []
    for _ in range(30):
        optimizer.zero_grad()
        total, _ = loss(model(images), batch)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        history.append(total.item())
    assert all(torch.isfinite(torch.tensor(history)))
    assert sum(history[-5:]) / 5 < 0.6 * sum(history[:5]) / 5, history
