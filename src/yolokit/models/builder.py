"""Spec -> network. Layer types resolve through the explicit table :data:`LAYER_TYPES` (no eval, no reflection).

Scaling rules (those of the reference parser, so that every reference checkpoint's spec builds the same network):
repeats ``n' = max(round(n * depth), 1) if n > 1 else n``; output channels ``ceil8(min(c2, max_channels) * width)``;
C3k2 at scales m/l/x forces ``c3k=True``; a spec with any C3k2 gets the depthwise (non-legacy) class branch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from yolokit.errors import SpecError
from yolokit.models.assemble import assemble_layers
from yolokit.models.detector import DetectionModel
from yolokit.models.spec import canonical_module_name, load_spec, spec_rows
from yolokit.nn import C2PSA, SPPF, Bottleneck, C2f, C3k, C3k2, Classify, Concat, Conv, Detect, DWConv
from yolokit.nn.yolov5 import C3, SPP, BottleneckCSP, Focus

__all__ = ["LAYER_TYPES", "build_model", "build_layers"]


@dataclass(frozen=True)
class BuildContext:
    """Model-wide settings every layer factory sees."""

    depth: float
    width: float
    max_channels: float
    nc: int
    reg_max: int
    end2end: bool
    scale: str | None
    legacy: bool


# A factory gets (input channels of each 'from' source, resolved args, scaled repeats, context) and returns the
# module and its output channel count.
LayerFactory = Callable[[list[int], list[Any], int, BuildContext], tuple[nn.Module, int]]


def _scale_channels(c2: int, ctx: BuildContext) -> int:
    if c2 == ctx.nc:  # as the reference parser: a channel count equal to nc stays unscaled (classifier outputs)
        return c2
    return int(math.ceil(min(c2, ctx.max_channels) * ctx.width / 8) * 8)


def _stack(make: Callable[[int], nn.Module], c1: int, c2: int, n: int) -> nn.Module:
    """One module, or a Sequential of n where the first maps c1 -> c2 and the rest c2 -> c2."""
    if n == 1:
        return make(c1)
    return nn.Sequential(*(make(c1 if j == 0 else c2) for j in range(n)))


def _plain(cls: type[nn.Module]) -> LayerFactory:
    def factory(ch: list[int], args: list[Any], n: int, ctx: BuildContext) -> tuple[nn.Module, int]:
        c2 = _scale_channels(args[0], ctx)
        return _stack(lambda c1: cls(c1, c2, *args[1:]), ch[0], c2, n), c2

    return factory


def _repeated(cls: type[nn.Module]) -> LayerFactory:
    """Blocks that take the repeat count as their 3rd argument and are built once."""

    def factory(ch: list[int], args: list[Any], n: int, ctx: BuildContext) -> tuple[nn.Module, int]:
        c2 = _scale_channels(args[0], ctx)
        rest = list(args[1:])
        if cls is C3k2 and ctx.scale is not None and ctx.scale in "mlx":
            rest = [True, *rest[1:]]  # c3k forced at the larger scales
        return cls(ch[0], c2, n, *rest), c2

    return factory


def _sppf(ch: list[int], args: list[Any], n: int, ctx: BuildContext) -> tuple[nn.Module, int]:
    c2 = _scale_channels(args[0], ctx)
    cv1_act = len(args) <= 3  # v8/v11 rows ([c2, k]) have SiLU on cv1; the YOLO26 row [c2, k, n, shortcut] not
    return _stack(lambda c1: SPPF(c1, c2, *args[1:], cv1_act=cv1_act), ch[0], c2, n), c2


def _concat(ch: list[int], args: list[Any], n: int, ctx: BuildContext) -> tuple[nn.Module, int]:
    return Concat(*args), sum(ch)


def _upsample(ch: list[int], args: list[Any], n: int, ctx: BuildContext) -> tuple[nn.Module, int]:
    return _stack(lambda c1: nn.Upsample(*args), ch[0], ch[0], n), ch[0]


def _detect(ch: list[int], args: list[Any], n: int, ctx: BuildContext) -> tuple[nn.Module, int]:
    nc = args[0] if args else ctx.nc
    return Detect(nc, ctx.reg_max, ctx.end2end, list(ch), legacy=ctx.legacy), 4 * ctx.reg_max + nc


def _classify(ch: list[int], args: list[Any], n: int, ctx: BuildContext) -> tuple[nn.Module, int]:
    nc = args[0] if args else ctx.nc  # the class count is never width-scaled
    return Classify(sum(ch), nc, *args[1:]), nc


#: Module name in a spec row -> factory. Keys equal :data:`yolokit.models.spec.KNOWN_MODULES`.
LAYER_TYPES: dict[str, LayerFactory] = {
    "Conv": _plain(Conv),
    "DWConv": _plain(DWConv),
    "Bottleneck": _plain(Bottleneck),
    "C2f": _repeated(C2f),
    "C3k": _repeated(C3k),
    "C3k2": _repeated(C3k2),
    "SPPF": _sppf,
    "C2PSA": _repeated(C2PSA),
    "Concat": _concat,
    "Upsample": _upsample,
    "Detect": _detect,
    "Classify": _classify,
    # YOLOv5's blocks (SiLU), as the reference parser also takes them in anchor-free specs (its "yolov5u" models)
    "C3": _repeated(C3),
    "BottleneckCSP": _repeated(BottleneckCSP),
    "SPP": _plain(SPP),
    "Focus": _plain(Focus),
}


def _resolve_arg(value: Any, nc: int) -> Any:
    if value == "nc":
        return nc
    if value == "None":
        return None
    return value


def _context(spec: Mapping[str, Any], nc: int) -> BuildContext:
    scale = spec.get("scale")
    scales = spec.get("scales") or {}
    depth, width, max_channels = scales[scale] if scale in scales else (1.0, 1.0, math.inf)
    legacy = not any(canonical_module_name(row[2]) == "C3k2" for row in spec_rows(spec))
    return BuildContext(
        depth=float(depth), width=float(width), max_channels=max_channels, nc=nc,
        reg_max=int(spec.get("reg_max", 16)), end2end=bool(spec.get("end2end", False)), scale=scale, legacy=legacy,
    )


def build_layers(spec: Mapping[str, Any], channels: int = 3) -> tuple[nn.Sequential, list[int]]:
    """Build the layers of a validated spec (see :func:`yolokit.models.spec.load_spec`): :func:`assemble_layers`
    with the anchor-free layer table."""
    ctx = _context(spec, int(spec["nc"]))
    return assemble_layers(spec, ctx, LAYER_TYPES, lambda value: _resolve_arg(value, ctx.nc), channels)


def build_model(
    spec: Mapping[str, Any] | str | Path, num_classes: int | None = None, channels: int = 3
) -> DetectionModel:
    """Build a randomly initialised :class:`DetectionModel` from a spec.

    Args:
        spec: a spec dict (from :func:`load_spec` or embedded in a checkpoint), or anything ``load_spec`` accepts.
        num_classes: overrides the spec's ``nc`` (the model's spec records the value used).
        channels: input image channels.

    Raises:
        SpecError: invalid spec, a layer that cannot be built (message names the index), or no final Detect.
    """
    spec = load_spec(spec)
    from yolokit.models.yolov5 import build_yolov5, is_yolov5_spec

    if is_yolov5_spec(spec):  # anchor-based YOLOv5 layout: its own layer table (models/yolov5.py)
        return build_yolov5(spec, num_classes, channels)
    if num_classes is not None:
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise SpecError(f"num_classes: expected a positive int, found {num_classes!r}")
        spec["nc"] = num_classes
    rows = spec_rows(spec)
    if canonical_module_name(rows[-1][2]) != "Detect":
        raise SpecError(f"layer {len(rows) - 1}: expected the last layer to be Detect, found {rows[-1][2]!r}")
    layers, save = build_layers(spec, channels)
    return DetectionModel(layers, save, spec, channels=channels)
