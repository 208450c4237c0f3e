import math

import torch
from torch import nn

from yolokit.nn import DFL, Detect, DWConv


def test_dfl_fixed_weight_and_expectation():
    dfl = DFL(16)
    assert dfl.conv.weight.flatten().tolist() == list(range(16))
    assert not dfl.conv.weight.requires_grad
    logits = torch.full((1, 4, 16, 2), -1e4)
    logits[0, :, 5, 0] = 0.0  # all mass on bin 5 for anchor 0
    out = dfl(logits.view(1, 64, 2))
    assert out.shape == (1, 4, 2)
    assert torch.allclose(out[0, :, 0], torch.full((4,), 5.0))
    uniform = dfl(torch.zeros(1, 64, 1))
    assert torch.allclose(uniform, torch.full((1, 4, 1), 7.5))


def test_dfl_equals_the_definition_per_side_and_anchor():
    torch.manual_seed(0)
    x = torch.randn(2, 64, 7, dtype=torch.float64) * 3
    got = DFL(16).double()(x)
    for b in range(2):
        for side in range(4):
            for a in range(7):
                logits = x[b, side * 16:(side + 1) * 16, a]  # channel = side * 16 + bin
                expected = (logits.softmax(0) * torch.arange(16, dtype=torch.float64)).sum()
                assert abs(got[b, side, a].item() - expected.item()) < 1e-12


def test_detect_v8_legacy_widths():
    head = Detect(80, 16, False, (64, 128, 256), legacy=True)
    assert head.cv2[0][0].conv.out_channels == 64 and head.cv2[0][2].out_channels == 64
    assert head.cv3[0][0].conv.weight.shape == (80, 64, 3, 3)
    assert isinstance(head.dfl, DFL) and not hasattr(head, "one2one_cv2")


def test_detect_v11_depthwise_class_branch():
    head = Detect(80, 16, False, (64, 128, 256))
    assert isinstance(head.cv3[0][0][0], DWConv) and head.cv3[0][0][0].conv.weight.shape == (64, 1, 3, 3)
    assert head.cv3[0][0][1].conv.weight.shape == (80, 64, 1, 1)
    assert head.cv3[2][2].weight.shape == (80, 80, 1, 1)


def test_detect_yolo26_end2end_branches():
    head = Detect(80, 1, True, (64, 128, 256))
    assert head.cv2[0][0].conv.out_channels == 16 and head.cv2[0][2].out_channels == 4
    assert isinstance(head.dfl, nn.Identity)
    assert head.one2one_cv2[0][2].weight is not head.cv2[0][2].weight
    assert head.one2one_cv3[0][0][1].act is not head.cv3[0][0][1].act  # the copy has its own SiLU
    keys = list(head.state_dict())
    assert keys.index("one2one_cv2.0.0.conv.weight") > keys.index("cv3.2.2.bias")


def test_detect_bias_init():
    head = Detect(4, 16, True, (8, 16, 32))
    head.stride = torch.tensor([8.0, 16.0, 32.0])
    head.bias_init()
    for branch_box, branch_cls in ((head.cv2, head.cv3), (head.one2one_cv2, head.one2one_cv3)):
        for seq, stride in zip(branch_cls, (8, 16, 32), strict=True):
            expected = math.log(5 / 4 / (640 / stride) ** 2)
            assert torch.allclose(seq[-1].bias, torch.full((4,), expected))
        assert all(seq[-1].bias.eq(2.0).all() for seq in branch_box)


def test_decode_reg_max1_ltrb_in_stride_units():
    head = Detect(1, 1, False, (4,))
    head.stride = torch.tensor([8.0])
    feats = [torch.zeros(1, 4, 2, 2)]
    raw = {"boxes": torch.tensor([1.0, 1.0, 3.0, 1.0]).view(1, 4, 1).repeat(1, 1, 4),
           "scores": torch.zeros(1, 1, 4), "feats": feats}
    out = head.decode(raw, xywh=False)
    # anchor (1.5, 0.5): x1 = (1.5-1)*8, y1 = (0.5-1)*8, x2 = (1.5+3)*8, y2 = (0.5+1)*8
    assert out[0, :, 1].tolist() == [4.0, -4.0, 36.0, 12.0, 0.5]
    xywh = head.decode(raw, xywh=True)
    assert xywh[0, :4, 1].tolist() == [20.0, 4.0, 32.0, 16.0]


def test_anchors_are_cached_per_shape():
    head = Detect(1, 1, False, (4, 4))
    head.stride = torch.tensor([8.0, 16.0])
    feats = [torch.zeros(1, 4, 4, 4), torch.zeros(1, 4, 2, 2)]
    first = head.anchors(feats)
    assert head.anchors(feats)[0] is first[0]
    other = head.anchors([torch.zeros(1, 4, 2, 4), torch.zeros(1, 4, 1, 2)])
    assert other[0].shape == (2, 10) and other[1].flatten().tolist() == [8.0] * 8 + [16.0] * 2


def test_select_topk_keeps_anchor_with_two_classes_sorted():
    head = Detect(2, 1, True, (4,))
    head.max_det = 2
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 2, 2], [5, 5, 9, 9]])
    scores = torch.tensor([[0.9, 0.8], [0.1, 0.2], [0.5, 0.3]])
    out = head.select_topk(torch.cat((boxes, scores), 1).unsqueeze(0))
    assert out.shape == (1, 2, 6)
    assert out[0].tolist() == [[0, 0, 10, 10, 0.8999999761581421, 0], [0, 0, 10, 10, 0.800000011920929, 1]]
    head.max_det = 300  # K = min(max_det, A)
    out = head.select_topk(torch.cat((boxes, scores), 1).unsqueeze(0))
    assert out.shape == (1, 3, 6) and out[0, :, 4].tolist() == sorted(out[0, :, 4].tolist(), reverse=True)
    assert out[0, 2].tolist()[:4] == [5, 5, 9, 9]
