import pytest
import torch
from torch import nn

from yolokit.nn import C2PSA, Attention, PSABlock


def _random_params(module: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)


def test_attention_layout_matches_reference_shapes():
    attn = Attention(128, num_heads=2, attn_ratio=0.5)
    assert (attn.head_dim, attn.key_dim) == (64, 32)
    assert attn.qkv.conv.weight.shape == (256, 128, 1, 1)
    assert attn.pe.conv.weight.shape == (128, 1, 3, 3)
    assert isinstance(attn.qkv.act, nn.Identity) and isinstance(attn.proj.act, nn.Identity)


def test_attention_equals_explicit_per_head_computation():
    torch.manual_seed(0)
    attn = Attention(8, num_heads=2, attn_ratio=0.5).double().eval()
    _random_params(attn)
    x = torch.randn(2, 8, 2, 3, dtype=torch.float64)
    b, c, h, w = x.shape
    heads, kd, hd = 2, attn.key_dim, attn.head_dim
    qkv = attn.qkv(x).reshape(b, heads, 2 * kd + hd, h * w)
    out = torch.zeros(b, c, h * w, dtype=torch.float64)
    for i in range(b):
        for head in range(heads):
            q, k, v = qkv[i, head, :kd], qkv[i, head, kd : 2 * kd], qkv[i, head, 2 * kd :]
            for n in range(h * w):
                logits = torch.stack([(q[:, n] * k[:, m]).sum() / kd**0.5 for m in range(h * w)])
                weights = torch.softmax(logits, 0)
                out[i, head * hd : (head + 1) * hd, n] = (v * weights).sum(1)
    v_map = qkv[:, :, 2 * kd :].reshape(b, c, h, w)
    expected = attn.proj(out.view(b, c, h, w) + attn.pe(v_map))
    torch.testing.assert_close(attn(x), expected)


def test_psablock_residuals():
    block = PSABlock(8, attn_ratio=0.5, num_heads=1).eval()
    for conv in (block.attn.proj, block.ffn[1]):  # both branches output exactly 0
        nn.init.zeros_(conv.conv.weight)
        nn.init.zeros_(conv.bn.bias)
    x = torch.randn(1, 8, 4, 4)
    torch.testing.assert_close(block(x), x)


def test_c2psa_structure_and_channel_check():
    block = C2PSA(256, 256, n=1)
    assert block.c == 128 and block.m[0].attn.num_heads == 2
    assert block(torch.zeros(1, 256, 2, 2)).shape == (1, 256, 2, 2)
    with pytest.raises(ValueError, match="equal input and output channels"):
        C2PSA(64, 128)
