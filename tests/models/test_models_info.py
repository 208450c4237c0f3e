import logging
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from yolokit.models.builder import build_model
from yolokit.models.info import _flop_hooks, count_gflops, count_layers

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.mark.parametrize(
    ("name", "layers", "params", "grads", "gflops", "fused_layers"),
    [
        ("yolov8n", 129, 3_157_200, 3_157_184, 8.9, 72),
        ("yolo11n", 181, 2_624_080, 2_624_064, 6.6, 100),
        ("yolo26n", 260, 2_572_280, 2_572_280, 6.1, 146),
    ],
)
def test_summary_matches_published_numbers(name, layers, params, grads, gflops, fused_layers, caplog):
    model = build_model(f"{name}.yaml")
    with caplog.at_level(logging.INFO, logger="yolokit.models.info"):
        result = model.info()
    assert result[:3] == (layers, params, grads)
    assert result[3] == pytest.approx(gflops, rel=0.03)
    display = name.replace("yolo", "YOLO")
    expected = (f"{display} summary: {layers:,} layers, {params:,} parameters, {grads:,} gradients, "
                f"{result[3]:.1f} GFLOPs")
    assert caplog.messages[-1] == expected
    model.fuse()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="yolokit.models.info"):
        fused = model.info()
    assert fused[0] == fused_layers and fused[1] < params
    assert caplog.messages[-1].startswith(f"{display} summary (fused): {fused_layers:,} layers")


def test_v8n_frozen_dfl_is_the_only_gradient_gap():
    model = build_model("yolov8n")
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen == ["model.22.dfl.conv.weight"]


def test_conv_flop_formula():
    conv = nn.Conv2d(6, 8, 3, stride=2, padding=1, groups=2)
    total = [0.0]
    with _flop_hooks(conv, total):
        conv(torch.zeros(1, 6, 32, 32))
    assert total[0] == 2 * 8 * 16 * 16 * (6 // 2) * 3 * 3
    conv(torch.zeros(1, 6, 32, 32))  # hooks are removed afterwards
    assert total[0] == 2 * 8 * 16 * 16 * 3 * 9


def test_gflops_scale_with_image_area_and_leave_model_untouched():
    # A convolution-only model scales exactly with the image area; attention (YOLO11/26's PSA) adds matmuls that
    # are quadratic in the area, as the reference counts them, so there the count shrinks faster than the area.
    model = build_model(FIXTURES / "yolov8-tiny.yaml")
    full = count_gflops(model, 640)
    assert count_gflops(model, 320) == pytest.approx(full / 4)
    assert count_gflops(model, (640, 320)) == pytest.approx(full / 2)
    model = build_model(FIXTURES / "yolo26-tiny.yaml")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    full = count_gflops(model, 640)
    assert full / 8 < count_gflops(model, 320) < full / 4
    assert model.training
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_detailed_table_and_quiet_mode(caplog):
    model = build_model(FIXTURES / "yolov8-tiny.yaml")
    with caplog.at_level(logging.INFO, logger="yolokit.models.info"):
        quiet = model.info(verbose=False)
    assert caplog.messages == []
    with caplog.at_level(logging.INFO, logger="yolokit.models.info"):
        detailed = model.info(detailed=True)
    assert detailed == quiet
    header = caplog.messages[0].split()
    assert header == ["layer", "name", "type", "gradient", "parameters", "shape", "mu", "sigma", "dtype"]
    n_params = len(list(model.parameters()))
    assert len(caplog.messages) == n_params + 2
    dfl_row = next(m for m in caplog.messages if "dfl.conv.weight" in m).split()
    assert dfl_row[2:6] == ["Conv2d", "False", "16", "[1,"] and dfl_row[-1] == "torch.float32"
    assert re.match(r"YOLOv8-tiny summary: \d+ layers", caplog.messages[-1])


def test_count_layers_counts_shared_modules_once():
    act = nn.SiLU()
    model = nn.Sequential(nn.Sequential(nn.Linear(2, 2), act), nn.Sequential(nn.Linear(2, 2), act))
    assert count_layers(model) == 3
