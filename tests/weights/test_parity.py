"""Parity: reference checkpoints read by the restricted unpickler, rebuilt from their embedded spec, give the
reference's own outputs: raw outputs of the random-init fixtures (``*-random-io.npz``, reference fp32, eval, unfused)
and the final predictions of the trained ``*-tiny-shapes.pt`` on ``fixtures/images`` (``*-predictions.json``).

Tolerances: boxes <= 1e-3 max abs (input pixels); scores <= 1e-4 max abs and, because random-init scores are tiny
(~1e-3), also <= 1e-3 of the largest reference score. The official n-scale checkpoints (``reference-full``) are
checked too when ``YOLOKIT_REFERENCE_FULL`` names their folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from yolokit.models.builder import build_model
from yolokit.weights.foreign import read_ultralytics

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BOX_TOL, SCORE_TOL = 1e-3, 1e-4
FULL_DIR = os.environ.get("YOLOKIT_REFERENCE_FULL")
# the reference's published parameter counts for the official n-scale models
FULL_PARAMETERS = {"yolov8n": 3_157_200, "yolo11n": 2_624_080, "yolo26n": 2_572_280}


def load_reference(path: Path) -> tuple[torch.nn.Module, dict]:
    """Model built from the checkpoint's embedded spec with its tensors loaded strictly, in eval mode."""
    state_dict, meta = read_ultralytics(path)
    model = build_model(meta["spec"])
    model.load_state_dict(state_dict, strict=True)
    return model.eval(), meta


def max_diffs(ours: torch.Tensor, ref: np.ndarray) -> tuple[float, float]:
    """Max abs difference of the box rows (first 4 channels) and of the score rows of ``(B, 4+nc, A)`` outputs."""
    ref_t = torch.from_numpy(ref)
    assert ours.shape == ref_t.shape
    return (ours[:, :4] - ref_t[:, :4]).abs().max().item(), (ours[:, 4:] - ref_t[:, 4:]).abs().max().item()


def score_tolerance(ref_scores: np.ndarray) -> float:
    return min(SCORE_TOL, 1e-3 * float(np.abs(ref_scores).max()))


def distinct_rows(scores: np.ndarray, gap: float = 1e-8) -> np.ndarray:
    """Mask of top-k rows whose score differs from every other row's by more than ``gap`` (ties may reorder)."""
    scores = scores.astype(np.float64)
    diff = np.abs(scores[:, None] - scores[None, :]) + np.eye(len(scores))
    return (diff > gap).all(axis=1)


def check_model(path: Path, io_path: Path) -> dict[str, float]:
    """Compare every output the npz holds; returns the measured max differences."""
    model, _ = load_reference(path)
    io = np.load(io_path)
    x = torch.from_numpy(io["x"])
    measured: dict[str, float] = {}
    with torch.no_grad():
        default = model(x)
        key = "one2many" if "one2many" in io.files else "output"
        measured[f"{key}_box"], measured[f"{key}_score"] = max_diffs(default, io[key])
        if "one2one" in io.files:
            head = model.head
            decoded = head.decode(head.forward_raw(model.head_inputs(x), one2one=True), xywh=True)
            box, score = max_diffs(decoded, io["one2one_decoded"])
            measured["one2one_decoded_box"], measured["one2one_decoded_score"] = box, score
            model.set_nms_free(True)
            topk, ref = model(x)[0].numpy(), io["one2one"][0]  # (K, 6)
            assert topk.shape == ref.shape
            measured["one2one_score"] = float(np.abs(topk[:, 4] - ref[:, 4]).max())
            rows = distinct_rows(ref[:, 4])
            assert rows.sum() >= 10, "too few distinct scores to compare"
            measured["one2one_box"] = float(np.abs(topk[rows, :4] - ref[rows, :4]).max())
            assert np.array_equal(topk[rows, 5], ref[rows, 5]), "classes differ on rows with distinct scores"
    score_tol = score_tolerance(io[key][:, 4:])
    for name, value in measured.items():
        assert value <= (BOX_TOL if name.endswith("_box") else score_tol), (name, value, score_tol)
    return measured


@pytest.mark.parametrize("family", ["yolov8", "yolo11", "yolo26"])
def test_tiny_random_parity(family: str) -> None:
    measured = check_model(FIXTURES / f"{family}-tiny-random.pt", FIXTURES / f"{family}-tiny-random-io.npz")
    assert ("one2one_box" in measured) is (family == "yolo26")


def image_batch(name: str) -> torch.Tensor:
    """A 320x320 fixture image as the model input (1, 3, 320, 320) RGB in [0, 1]: at imgsz 320 the reference's
    letterbox neither resizes nor pads it."""
    import cv2

    image = cv2.imread(str(FIXTURES / "images" / name))
    assert image is not None and image.shape == (320, 320, 3)
    return torch.from_numpy(np.ascontiguousarray(image[..., ::-1].transpose(2, 0, 1))).float()[None] / 255


def predict(model: torch.nn.Module, x: torch.Tensor, nms_free: bool) -> torch.Tensor:
    """Final detections ``(n, 6)`` [x1, y1, x2, y2, conf, cls] at conf 0.05, iou 0.7, clipped to the image."""
    from yolokit.ops.nms import non_max_suppression

    with torch.no_grad():
        if nms_free:
            model.set_nms_free(True)
            out = model(x)[0]
            out = out[out[:, 4] > 0.05]
        else:
            out = non_max_suppression(model(x), conf=0.05, iou=0.7)[0]
    out[:, :4] = out[:, :4].clamp(0, 320)
    return out


def compare_predictions(model: torch.nn.Module, family: str, mode: str) -> tuple[float, float, int]:
    """Max box and conf differences against the reference predictions over all fixture images, and the count."""
    reference = json.loads((FIXTURES / f"{family}-tiny-shapes-predictions.json").read_text())
    box_diff = conf_diff = 0.0
    count = 0
    for name in reference["source_images"]:
        ours = predict(model, image_batch(name), nms_free=mode == "nms_false")
        ref = torch.tensor(reference["predictions"][mode][name], dtype=torch.float32).reshape(-1, 6)
        assert ours.shape == ref.shape, (name, ours.shape, ref.shape)
        assert torch.equal(ours[:, 5], ref[:, 5]), name
        box_diff = max(box_diff, (ours[:, :4] - ref[:, :4]).abs().max().item())
        conf_diff = max(conf_diff, (ours[:, 4] - ref[:, 4]).abs().max().item())
        count += len(ref)
    return box_diff, conf_diff, count


@pytest.mark.parametrize(("family", "mode"), [("yolov8", "default"), ("yolo11", "default"), ("yolo26", "default"),
                                              ("yolo26", "nms_false")])  # fmt: skip
def test_trained_shapes_predictions_match_reference(family: str, mode: str) -> None:
    model, meta = load_reference(FIXTURES / f"{family}-tiny-shapes.pt")
    assert meta["names"] == {0: "rectangle", 1: "ellipse", 2: "triangle"}
    box_diff, conf_diff, count = compare_predictions(model, family, mode)
    assert count >= 10
    assert box_diff <= BOX_TOL and conf_diff <= SCORE_TOL, (box_diff, conf_diff)


def test_parity_is_sensitive_to_a_wrong_weight() -> None:
    """Guard: one perturbed BatchNorm statistic must break the comparison (the tolerances are not vacuous)."""
    model, _ = load_reference(FIXTURES / "yolo11-tiny-shapes.pt")
    with torch.no_grad():
        model.model[2].cv1.bn.running_var.mul_(1.2)
    with pytest.raises(AssertionError):
        box_diff, conf_diff, _ = compare_predictions(model, "yolo11", "default")
        assert box_diff <= BOX_TOL and conf_diff <= SCORE_TOL


@pytest.mark.skipif(not FULL_DIR, reason="set YOLOKIT_REFERENCE_FULL to the folder of the official n-scale fixtures")
@pytest.mark.parametrize("name", ["yolov8n", "yolo11n", "yolo26n"])
def test_reference_full_parity(name: str) -> None:
    folder = Path(str(FULL_DIR))
    path = folder / f"{name}-random.pt"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    state_dict, meta = read_ultralytics(path)
    assert meta["names"] == {i: str(i) for i in range(80)} or len(meta["names"]) == 80
    params = sum(v.numel() for k, v in state_dict.items() if not k.endswith(("running_mean", "running_var", "tracked")))
    assert params == FULL_PARAMETERS[name]
    check_model(path, folder / f"{name}-random-io.npz")
