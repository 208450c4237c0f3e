"""Classification specs, the Classify head and ClassificationModel: parity with the reference's keys and counts."""

import json
from pathlib import Path

import pytest
import torch

from yolokit.errors import ConfigError, SpecError
from yolokit.models.builder import build_model
from yolokit.models.classifier import CLS_BN_EPS, ClassificationModel, build_classifier
from yolokit.models.spec import load_spec
from yolokit.nn.classify import Classify

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cls"
REFERENCE = json.loads((FIXTURES / "reference_cls_keys.json").read_text())
TINY = {
    "nc": 3, "scales": {"t": [0.33, 0.0625, 1024]}, "yaml_file": "yolo11-cls-tiny.yaml",
    "backbone": [[-1, 1, "Conv", [64, 3, 2]], [-1, 1, "Conv", [128, 3, 2]], [-1, 1, "C3k2", [256, False, 0.25]],
                 [-1, 1, "Conv", [256, 3, 2]], [-1, 1, "C2PSA", [256]]],
    "head": [[-1, 1, "Classify", ["nc"]]],
}  # fmt: skip


@pytest.mark.parametrize("name", ["yolov8n-cls", "yolo11n-cls", "yolo26n-cls"])
def test_state_dict_keys_and_shapes_equal_reference(name):
    model = build_classifier(f"{name}.yaml")
    mine = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert len(mine) == {"yolov8n-cls": 158, "yolo11n-cls": 236, "yolo26n-cls": 236}[name]
    assert mine == REFERENCE["keys"][name]  # same keys, same shapes, same order
    assert sum(p.numel() for p in model.parameters()) == REFERENCE["params"][name]


def test_published_n_scale_counts():
    assert REFERENCE["params"]["yolov8n-cls"] == 2_719_288
    assert REFERENCE["params"]["yolo11n-cls"] == REFERENCE["params"]["yolo26n-cls"] == 2_812_104
    assert sum(p.numel() for p in build_classifier("yolov8n-cls").parameters()) == 2_719_288


@pytest.mark.slow
@pytest.mark.parametrize("family", ["yolov8", "yolo11", "yolo26"])
def test_every_scale_has_the_reference_parameter_count(family):
    for scale in "smlx":
        name = f"{family}{scale}-cls"
        model = build_classifier(f"{name}.yaml")
        assert sum(p.numel() for p in model.parameters()) == REFERENCE["params"][name], name


def test_info_counts_equal_reference_summary():
    layers, params, grads, gflops = build_classifier("yolo11n-cls.yaml").info(verbose=False)
    assert (layers, params, grads) == (86, 2_812_104, 2_812_104)  # the reference's summary line
    assert gflops == pytest.approx(3.3, rel=0.05)
    assert build_classifier("yolov8n-cls.yaml").info(verbose=False)[:2] == (56, 2_719_288)


def test_classify_head_by_hand():
    head = Classify(4, 3).eval()
    x = torch.randn(2, 4, 5, 7)
    hidden = head.conv(x).mean(dim=(2, 3))  # global average pool by hand, (2, 1280)
    expected = (hidden @ head.linear.weight.T + head.linear.bias).softmax(1)
    assert torch.allclose(head(x), expected, atol=1e-6)
    assert torch.allclose(head(x).sum(1), torch.ones(2))
    head.train()
    head.conv.bn.eval()  # same normalisation as above: train mode then differs only by the softmax
    logits = head(x)
    assert not torch.allclose(logits.sum(1), torch.ones(2))
    assert torch.allclose(logits.softmax(1), expected, atol=1e-6)


def test_model_outputs_modes_and_attributes():
    model = build_classifier(TINY)
    assert isinstance(model, ClassificationModel) and model.task == "classify"
    assert model.nc == 3 and model.names == {0: "0", 1: "1", 2: "2"} and model.stride.tolist() == [1.0]
    assert {m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {CLS_BN_EPS}
    x = torch.rand(2, 3, 64, 96)
    logits = model.train()(x)
    assert logits.shape == (2, 3)
    probs = model.eval()(x)
    assert probs.shape == (2, 3) and torch.allclose(probs.sum(1), torch.ones(2))
    assert model.head_inputs(x)[0].shape == (2, 16, 8, 12)


def test_fuse_keeps_probabilities():
    model = build_classifier(TINY).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial statistics so folding matters
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.rand(1, 3, 64, 64)
    before = model(x)
    assert not model.is_fused()
    after = model.fuse()(x)
    assert model.is_fused() and torch.allclose(before, after, atol=1e-5)


def test_num_classes_override_and_dropout():
    model = build_classifier("yolo11n-cls.yaml", num_classes=5)
    assert model.head.linear.out_features == 5 and model.spec["nc"] == 5
    model.set_dropout(0.25)
    assert model.head.drop.p == 0.25
    with pytest.raises(ConfigError, match="dropout"):
        model.set_dropout(1.5)
    with pytest.raises(ConfigError, match="classifier has no NMS"):
        model.set_nms_free(True)


def test_builders_refuse_the_other_task():
    with pytest.raises(SpecError, match="expected the last layer of a classifier to be Classify"):
        build_classifier("yolo11n.yaml")
    with pytest.raises(SpecError, match="expected the last layer to be Detect"):
        build_model("yolo11n-cls.yaml")


def test_shipped_spec_names_resolve():
    spec = load_spec("yolo26s-cls")
    assert spec["scale"] == "s" and spec["yaml_file"] == "yolo26s-cls.yaml" and spec["nc"] == 1000
    assert spec["head"] == [[-1, 1, "Classify", ["nc"]]]


def test_facade_builds_a_classifier():
    from yolokit import YOLO

    model = YOLO("yolov8n-cls.yaml", num_classes=4)
    assert model.task == "classify" and isinstance(model.model, ClassificationModel)
    assert len(model.names) == 4
    with pytest.raises(ConfigError, match="is a 'classify' model"):
        YOLO("yolov8n-cls.yaml", task="detect")
