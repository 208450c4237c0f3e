"""YOLOv5 networks from a spec: the original's YAML layout, built with yolokit's own modules (``nn/yolov5.py``).

A YOLOv5 spec is recognised by its ``anchors`` key (:func:`is_yolov5_spec`)::

    nc: 80
    depth_multiple: 0.33          # or  scales: {n: [0.33, 0.25, 1024], ...}  (yolokit's form, with scale n)
    width_multiple: 0.25
    anchors: [[10, 13, 16, 30, 33, 23], ...]    # per level [w, h, ...] in input pixels
    backbone: [[-1, 1, Conv, [64, 6, 2, 2]], [-1, 3, C3, [128]], ..., [-1, 1, SPPF, [1024, 5]]]
    head: [..., [[17, 20, 23], 1, Detect, [nc, anchors]]]
    activation: SiLU              # optional (yolokit): Conv activation, e.g. "LeakyReLU(0.1)" or "Hardswish"
    csp_activation: ...           # optional (yolokit): BottleneckCSP's own activation (default: activation)
    shared_activation: false      # optional (yolokit): one activation instance for every Conv (v6.2+ files)
    bn_eps: 0.001                 # optional (yolokit): BatchNorm eps

Scaling rules are the original parser's: repeats ``max(round(n * depth), 1) if n > 1``; output channels
``ceil8(c2 * width)`` unless ``c2`` equals the head's output count; ``C3`` / ``BottleneckCSP`` take the repeats as
their 3rd argument. The anchors in the spec are pixels; the model divides them by the measured strides (and flips
their level order if it disagrees with the strides, as the original's anchor-order check does).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from yolokit.errors import SpecError
from yolokit.models.assemble import assemble_layers
from yolokit.models.detector import DetectionModel
from yolokit.models.spec import canonical_module_name, load_spec, spec_rows
from yolokit.nn.conv import Concat, Conv
from yolokit.nn.yolov5 import (
    C3,
    SPP,
    SPPF5,
    ActFactory,
    AnchorDetect,
    Bottleneck5,
    BottleneckCSP,
    Focus,
    make_activation,
)

__all__ = ["V5_LAYER_TYPES", "YOLOv5Model", "build_yolov5", "inference_defaults", "is_yolov5_spec"]
logger = logging.getLogger(__name__)

#: NMS settings of the original's ``detect.py`` (predict) and ``val.py`` (val) that differ from yolokit's defaults.
PREDICT_DEFAULTS = {"iou": 0.45, "max_det": 1000}
VAL_DEFAULTS = {"iou": 0.6}


def is_yolov5_spec(spec: Any) -> bool:
    """True for a YOLOv5 (anchor-based) spec: a mapping with an ``anchors`` entry."""
    return isinstance(spec, Mapping) and "anchors" in spec


def inference_defaults(spec: Any, mode: str) -> dict[str, Any]:
    """The original's NMS defaults for ``mode`` (``"predict"``: iou 0.45, max_det 1000; ``"val"``: iou 0.6) when
    ``spec`` is a YOLOv5 spec, else ``{}``."""
    if not is_yolov5_spec(spec):
        return {}
    return dict(PREDICT_DEFAULTS if mode == "predict" else VAL_DEFAULTS if mode == "val" else {})


@dataclass(frozen=True)
class _Context:
    depth: float
    width: float
    max_channels: float
    nc: int
    no: int  # na * (nc + 5): a channel count equal to it is not width-scaled
    anchors: list[list[float]]
    act: ActFactory
    csp_act: ActFactory


def _multipliers(spec: Mapping[str, Any]) -> tuple[float, float, float]:
    scales, scale = spec.get("scales") or {}, spec.get("scale")
    if scale in scales:
        depth, width, max_channels = scales[scale]
        return float(depth), float(width), float(max_channels)
    depth, width = spec.get("depth_multiple", 1.0), spec.get("width_multiple", 1.0)
    for key, value in (("depth_multiple", depth), ("width_multiple", width)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise SpecError(f"YOLOv5 spec '{key}': expected a positive number, found {value!r}")
    return float(depth), float(width), math.inf


def _anchors(spec: Mapping[str, Any]) -> list[list[float]]:
    anchors = spec.get("anchors")
    if isinstance(anchors, int):
        raise SpecError(f"YOLOv5 spec 'anchors': {anchors} is an anchor count, which the original fills in with "
                        "AutoAnchor; give the anchors in pixels, e.g. [[10, 13, 16, 30, 33, 23], ...]")
    ok = isinstance(anchors, list) and anchors and all(isinstance(level, list) and level for level in anchors)
    if not ok or not all(isinstance(v, (int, float)) and v > 0 for level in anchors for v in level):
        raise SpecError(f"YOLOv5 spec 'anchors': expected per level a list [w, h, ...] of positive pixel sizes, "
                        f"found {anchors!r}")
    return [[float(v) for v in level] for level in anchors]


def _context(spec: Mapping[str, Any]) -> _Context:
    depth, width, max_channels = _multipliers(spec)
    anchors = _anchors(spec)
    nc = int(spec["nc"])
    shared = bool(spec.get("shared_activation", False))
    try:
        act = make_activation(str(spec.get("activation", "SiLU")), shared=shared)
        csp_act = make_activation(str(spec.get("csp_activation", spec.get("activation", "SiLU"))))
    except ValueError as exc:
        raise SpecError(f"YOLOv5 spec: {exc}") from exc
    return _Context(depth, width, max_channels, nc, len(anchors[0]) // 2 * (nc + 5), anchors, act, csp_act)


def _c2(value: Any, ctx: _Context) -> int:
    if value == ctx.no:
        return int(value)
    return int(math.ceil(min(value, ctx.max_channels) * ctx.width / 8) * 8)


LayerFactory = Callable[[list[int], list[Any], int, _Context], tuple[nn.Module, int]]


def _sized(make: Callable[..., nn.Module], takes_repeats: bool = False) -> LayerFactory:
    """Rows ``[c2, *rest]``: built as ``make(c1, c2, [n,] *rest)``; ``n`` copies in a Sequential unless
    ``takes_repeats`` (C3, BottleneckCSP repeat their inner bottleneck instead)."""

    def factory(ch: list[int], args: list[Any], n: int, ctx: _Context) -> tuple[nn.Module, int]:
        c2 = _c2(args[0], ctx)
        if takes_repeats:
            return make(ch[0], c2, n, *args[1:], ctx=ctx), c2
        if n == 1:
            return make(ch[0], c2, *args[1:], ctx=ctx), c2
        return nn.Sequential(*(make(ch[0] if j == 0 else c2, c2, *args[1:], ctx=ctx) for j in range(n))), c2

    return factory


def _concat(ch: list[int], args: list[Any], n: int, ctx: _Context) -> tuple[nn.Module, int]:
    return Concat(*args), sum(ch)


def _upsample(ch: list[int], args: list[Any], n: int, ctx: _Context) -> tuple[nn.Module, int]:
    return nn.Upsample(*args), ch[0]


def _detect(ch: list[int], args: list[Any], n: int, ctx: _Context) -> tuple[nn.Module, int]:
    nc = args[0] if args else ctx.nc
    anchors = args[1] if len(args) > 1 else ctx.anchors
    if not isinstance(anchors, list):
        anchors = _anchors({"anchors": anchors})
    return AnchorDetect(int(nc), anchors, list(ch)), int(nc) + 5


def _conv_row(c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1, *,
              act: ActFactory) -> Conv:
    return Conv(c1, c2, k, s, p, g, act=act())


#: Module name in a YOLOv5 spec row -> factory (the original's names).
V5_LAYER_TYPES: dict[str, LayerFactory] = {
    "Conv": _sized(lambda c1, c2, *a, ctx: _conv_row(c1, c2, *a, act=ctx.act)),
    "Focus": _sized(lambda c1, c2, *a, ctx: Focus(c1, c2, *a, act=ctx.act)),
    "Bottleneck": _sized(lambda c1, c2, *a, ctx: Bottleneck5(c1, c2, *a, act=ctx.act)),
    "C3": _sized(lambda c1, c2, n, *a, ctx: C3(c1, c2, n, *a, act=ctx.act), takes_repeats=True),
    "BottleneckCSP": _sized(lambda c1, c2, n, *a, ctx: BottleneckCSP(c1, c2, n, *a, act=ctx.act,
                                                                     csp_act=ctx.csp_act), takes_repeats=True),
    "SPP": _sized(lambda c1, c2, *a, ctx: SPP(c1, c2, *a, act=ctx.act)),
    "SPPF": _sized(lambda c1, c2, *a, ctx: SPPF5(c1, c2, *a, act=ctx.act)),
    "Concat": _concat,
    "Upsample": _upsample,
    "Detect": _detect,
}


def _resolve(value: Any, spec: Mapping[str, Any], nc: int) -> Any:
    if value == "nc":
        return nc
    if value == "anchors":
        return spec["anchors"]
    if value == "None":
        return None
    return value


def build_v5_layers(spec: Mapping[str, Any], channels: int = 3) -> tuple[nn.Sequential, list[int]]:
    """The layers of a validated YOLOv5 spec (each with ``i``, ``f``, ``type``) and the indices later layers read."""
    ctx = _context(spec)
    return assemble_layers(spec, ctx, V5_LAYER_TYPES, lambda value: _resolve(value, spec, ctx.nc), channels)


class YOLOv5Model(DetectionModel):
    """A YOLOv5 detector: the layers of a YOLOv5 spec ending in an :class:`~yolokit.nn.yolov5.AnchorDetect` head.

    The same surface as :class:`DetectionModel` (``model``, ``spec``, ``names``, ``nc``, ``stride``, ``head``,
    ``fuse``, ``info``, ``head_inputs``); state_dict keys ``model.{i}.…`` equal the original checkpoint's.
    ``forward``: eval -> ``(B, 4+nc, A)`` xywh pixels + ``obj * cls`` scores; train -> per level raw maps
    ``[(B, na, H, W, 5+nc), ...]`` (the input of ``losses.yolov5.YOLOv5Loss``). ``end2end`` is False.
    """

    family = "yolov5"

    def __init__(self, layers: nn.Sequential, save: list[int], spec: dict[str, Any], channels: int = 3,
                 stride_probe: int = 256) -> None:
        nn.Module.__init__(self)
        if not isinstance(layers[-1], AnchorDetect):
            raise ValueError("YOLOv5Model: the last layer must be an AnchorDetect head")
        self.model = layers
        self._saved = frozenset(save)
        self.spec = spec
        self.channels = channels
        self.nc = self.head.nc
        self.names = {i: str(i) for i in range(self.nc)}
        self.end2end = False
        self.stride = self._probe_strides(stride_probe)
        head = self.head
        head.stride = self.stride.clone()
        with torch.no_grad():
            head.anchors /= self.stride.view(-1, 1, 1)
        _check_anchor_order(head)
        head.bias_init()

    def info(self, verbose: bool = True, detailed: bool = False,
             imgsz: int | tuple[int, int] = 640) -> tuple[int, int, int, float]:
        """``(layers, parameters, gradients, gflops)`` with the original's layer count (every module of the tree,
        as its summary counts them); logged as ``"YOLOv5n summary: 270 layers, ..."``."""
        from yolokit.models.info import model_info

        _, parameters, gradients, gflops = model_info(self, verbose=False, detailed=detailed, imgsz=imgsz)
        layers = len(list(self.modules()))
        if verbose:
            from yolokit.models.spec import model_display_name

            fused = " (fused)" if self.is_fused() else ""
            logger.info("%s summary%s: %s layers, %s parameters, %s gradients, %.1f GFLOPs", model_display_name(
                self.spec), fused, f"{layers:,}", f"{parameters:,}", f"{gradients:,}", gflops)
        return layers, parameters, gradients, gflops


def _check_anchor_order(head: AnchorDetect) -> None:
    """Flip the anchors' level order when their mean area runs against the strides (the original's check)."""
    area = head.anchors.prod(-1).mean(-1).view(-1)  # (nl,)
    delta_area, delta_stride = area[-1] - area[0], head.stride[-1] - head.stride[0]
    if delta_area and (torch.sign(delta_area) != torch.sign(delta_stride)):
        logger.info("YOLOv5 anchors ran against the stride order; reversed them")
        with torch.no_grad():
            head.anchors[:] = head.anchors.flip(0)


def build_yolov5(spec: Mapping[str, Any] | str | Path, num_classes: int | None = None,
                 channels: int = 3) -> YOLOv5Model:
    """Build a randomly initialised :class:`YOLOv5Model` from a YOLOv5 spec (dict, YAML path or shipped name).

    ``num_classes`` overrides ``nc``; BatchNorm eps is ``spec["bn_eps"]`` (default 1e-3, the original's).
    Raises ``SpecError`` for an invalid spec, an unknown layer or a last layer that is not ``Detect``.
    """
    spec = load_spec(spec)
    if not is_yolov5_spec(spec):
        raise SpecError("build_yolov5: expected a YOLOv5 spec (with 'anchors'); build other specs with build_model")
    if num_classes is not None:
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise SpecError(f"num_classes: expected a positive int, found {num_classes!r}")
        spec["nc"] = num_classes
    rows = spec_rows(spec)
    if canonical_module_name(rows[-1][2]) != "Detect":
        raise SpecError(f"layer {len(rows) - 1}: expected the last layer to be Detect, found {rows[-1][2]!r}")
    layers, save = build_v5_layers(spec, channels)
    eps = spec.get("bn_eps")
    if eps is not None:
        for module in layers.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eps = float(eps)
    return YOLOv5Model(layers, save, spec, channels=channels)
