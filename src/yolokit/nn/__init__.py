"""Network building blocks: convolution blocks, attention blocks and the detection head."""

from yolokit.nn.attention import C2PSA, Attention, PSABlock
from yolokit.nn.blocks import SPPF, Bottleneck, C2f, C3k, C3k2, Concat, Conv, DWConv
from yolokit.nn.heads import DFL, Detect

__all__ = [
    "Attention", "Bottleneck", "C2PSA", "C2f", "C3k", "C3k2", "Concat", "Conv", "DFL", "DWConv", "Detect",
    "PSABlock", "SPPF",
]
