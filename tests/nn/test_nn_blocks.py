import pytest
import torch
from torch import nn

from conftest import randomise_batchnorm
from yolokit.nn import SPPF, Bottleneck, C2f, C3k, C3k2, Concat, Conv, DWConv, PSABlock
from yolokit.nn.blocks import autopad


def test_autopad_same_padding():
    assert [autopad(k) for k in (1, 3, 5)] == [0, 1, 2]
    assert autopad(3, dilation=2) == 2
    assert autopad(3, padding=0) == 0


def test_conv_structure_shapes_and_bn_settings():
    conv = Conv(3, 8, 3, 2)
    assert conv.conv.bias is None and conv.conv.padding == (1, 1)
    assert conv.bn.eps == 1e-3 and conv.bn.momentum == 0.03
    assert isinstance(conv.act, nn.SiLU)
    assert Conv(8, 8, act=False).act.__class__ is nn.Identity
    assert Conv(4, 4).act is Conv(2, 2).act  # one stateless SiLU shared by all Convs
    assert conv(torch.zeros(2, 3, 16, 12)).shape == (2, 8, 8, 6)
    assert list(conv.state_dict()) == [
        "conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"
    ]


def test_conv_fuse_matches_formula_and_is_idempotent():
    conv = Conv(4, 6, 3, act=False).double().eval()
    randomise_batchnorm(conv)
    x = torch.randn(2, 4, 7, 5, dtype=torch.float64)
    expected = conv(x)
    bn = conv.bn
    gamma_std = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    w_expected = conv.conv.weight * gamma_std.view(-1, 1, 1, 1)
    b_expected = bn.bias - bn.running_mean * gamma_std
    conv.fuse()
    assert conv.bn is None and "bn.weight" not in conv.state_dict()
    torch.testing.assert_close(conv.conv.weight, w_expected)
    torch.testing.assert_close(conv.conv.bias, b_expected)
    assert (conv(x) - expected).abs().max().item() <= 1e-10
    conv.fuse()  # idempotent
    assert (conv(x) - expected).abs().max().item() <= 1e-10


def test_dwconv_groups():
    dw = DWConv(16, 16, 3)
    assert dw.conv.groups == 16 and dw.conv.weight.shape == (16, 1, 3, 3)
    assert DWConv(8, 12, 3).conv.groups == 4


def test_bottleneck_residual_only_when_shapes_match():
    block = Bottleneck(4, 4, shortcut=True).eval()
    nn.init.zeros_(block.cv2.conv.weight)
    nn.init.zeros_(block.cv2.bn.bias)  # cv2 output = SiLU(0) = 0
    x = torch.randn(1, 4, 5, 5)
    torch.testing.assert_close(block(x), x)
    assert not Bottleneck(4, 8).add and not Bottleneck(4, 4, shortcut=False).add
    assert block.cv1.conv.out_channels == 2  # hidden int(c2 * 0.5)


def test_c2f_widths_and_forward():
    block = C2f(32, 64, n=2, shortcut=True, e=0.5)
    assert block.cv1.conv.weight.shape == (64, 32, 1, 1)
    assert block.cv2.conv.weight.shape == (64, 128, 1, 1)  # (2 + n) * c
    assert len(block.m) == 2 and block.m[0].add
    assert block(torch.zeros(1, 32, 8, 8)).shape == (1, 64, 8, 8)


def test_c3k_and_c3k2_variants():
    c3k = C3k(16, 16, n=2)
    assert c3k.cv3.conv.weight.shape == (16, 16, 1, 1) and len(c3k.m) == 2
    plain = C3k2(32, 64, n=1, c3k=False, e=0.25)
    assert isinstance(plain.m[0], Bottleneck) and plain.m[0].cv1.conv.out_channels == 8
    assert plain.cv2.conv.weight.shape == (64, 48, 1, 1)
    with_c3k = C3k2(32, 32, n=1, c3k=True)
    assert isinstance(with_c3k.m[0], C3k) and len(with_c3k.m[0].m) == 2
    attn = C3k2(64, 64, n=1, c3k=True, attn=True)
    assert isinstance(attn.m[0][0], Bottleneck) and isinstance(attn.m[0][1], PSABlock)
    assert attn.m[0][1].attn.num_heads == 1  # max(32 // 64, 1)
    for block in (plain, with_c3k, attn):
        c1 = block.cv1.conv.in_channels
        assert block(torch.zeros(1, c1, 4, 4)).shape[1] == block.cv2.conv.out_channels


def test_sppf_v8_style_and_yolo26_style():
    v8 = SPPF(16, 16, 5, cv1_act=True)
    assert isinstance(v8.cv1.act, nn.SiLU) and not v8.add
    assert v8.cv2.conv.weight.shape == (16, 32, 1, 1)  # hidden 8 * (3 + 1)
    y26 = SPPF(16, 16, 5, n=3, shortcut=True)
    assert isinstance(y26.cv1.act, nn.Identity) and y26.add
    assert not SPPF(16, 32, 5, 3, True).add


def test_sppf_pools_n_times_and_adds_residual():
    block = SPPF(2, 2, k=3, n=2, shortcut=True).double().eval()
    with torch.no_grad():  # cv1: identity on channel 0; cv2: sum of the n pooled maps of channel 0 (not y itself)
        block.cv1.conv.weight.zero_()
        block.cv1.conv.weight[0, 0] = 1.0
        block.cv2.conv.weight.zero_()
        block.cv2.conv.weight[0, 2] = 1.0  # second pool
        for bn in (block.cv1.bn, block.cv2.bn):
            bn.running_var.fill_(1.0 - bn.eps)
    block.cv2.act = nn.Identity()
    x = torch.zeros(1, 2, 7, 7, dtype=torch.float64)
    x[0, 0, 3, 3] = 1.0
    out = block(x)
    # two 3x3 max-pools spread the single 1 to a 5x5 square; plus the residual x
    expected = torch.zeros(7, 7, dtype=torch.float64)
    expected[1:6, 1:6] = 1.0
    expected[3, 3] += 1.0
    torch.testing.assert_close(out[0, 0], expected)
    torch.testing.assert_close(out[0, 1], x[0, 1])


def test_concat():
    out = Concat()([torch.zeros(1, 2, 3, 3), torch.ones(1, 5, 3, 3)])
    assert out.shape == (1, 7, 3, 3) and out[0, 2:].eq(1).all()



@pytest.mark.parametrize("fused", [False, True])
def test_split_conv_parts_concatenate_to_the_conv(fused):
    from yolokit.nn.blocks import split_conv

    conv = Conv(8, 12, 1).eval()
    randomise_batchnorm(conv)
    if fused:
        conv.fuse()
    parts = split_conv(conv, [5, 7])
    x = torch.randn(2, 8, 6, 6)
    assert [p.conv.out_channels for p in parts] == [5, 7]
    assert torch.allclose(torch.cat([p(x) for p in parts], 1), conv(x), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="sizes summing to 12"):
        split_conv(conv, [5, 5])


@pytest.mark.parametrize("block", ["c2f", "c3k2", "c2psa"])
def test_split_cv1_keeps_outputs(block):
    from yolokit.nn.attention import C2PSA

    torch.manual_seed(0)
    module = {"c2f": lambda: C2f(16, 32, n=2), "c3k2": lambda: C3k2(16, 32, 1, True),
              "c2psa": lambda: C2PSA(64, 64)}[block]().eval()
    randomise_batchnorm(module)
    x = torch.randn(1, module.cv1.conv.in_channels, 8, 8)
    with torch.no_grad():
        before = module(x)
        module.split_cv1()
        after = module(x)
    assert module.cv1_parts is not None and len(module.cv1_parts) == 2
    assert torch.allclose(before, after, rtol=0, atol=1e-5)


def test_exported_graphs_have_no_split_in_csp_blocks():
    onnx = pytest.importorskip("onnx")
    from yolokit.export.onnx import export_onnx
    from yolokit.models.builder import build_model
    from yolokit.models.spec import load_spec

    model = build_model(load_spec("yolov8n.yaml"))
    graph = onnx.load_from_string(export_onnx(model, imgsz=64)).graph
    assert [n.op_type for n in graph.node].count("Split") == 0  # 8 C2f blocks, none splits
    assert model.model[2].cv1_parts is None  # the caller's model is unchanged
