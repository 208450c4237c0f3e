"""Network building blocks, lowest first: primitives (conv.py), attention (attention.py), CSP blocks (blocks.py),
the detection head (heads.py), the classification head (classify.py)."""

from yolokit.nn.attention import C2PSA, Attention, PSABlock
from yolokit.nn.blocks import SPPF, Bottleneck, C2f, C3k, C3k2
from yolokit.nn.classify import Classify
from yolokit.nn.conv import Concat, Conv, DWConv
from yolokit.nn.heads import DFL, Detect

__all__ = [
    "Attention", "Bottleneck", "C2PSA", "C2f", "C3k", "C3k2", "Classify", "Concat", "Conv", "DFL", "DWConv", "Detect",
    "PSABlock", "SPPF",
]
