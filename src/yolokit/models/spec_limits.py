"""Bounds on the values of a model spec, checked before anything is built (no torch here).

A spec is read from YAML files and from checkpoints, so its numbers are hostile input: a width of 10^6, a million
repeats or an upsample factor of 10^4 would allocate gigabytes (or crash a kernel) long after loading, and a kernel
or stride of 0 would fail deep inside torch. :func:`check_spec_limits` refuses them up front with a ``SpecError``
naming the layer. The bounds (far above every released YOLO model):

- ``nc`` <= ``MAX_CLASSES``; ``reg_max`` 1..64; at most ``MAX_LAYERS`` rows;
- scales: depth and width multiples <= 16, ``max_channels`` <= ``MAX_CHANNELS``;
- per layer after scaling: channels 1..``MAX_CHANNELS``, repeats 1..``MAX_REPEATS``;
- Conv / DWConv / Focus kernel 1..31 and stride 1..32; SPPF kernel odd 1..31; SPP kernels odd 1..31;
- other block arguments: ints 0..64 (groups, dilation, padding, inner repeats), ratios 0..4 (expansion);
- Upsample factor in (0, 32]; Concat dimension 1 (or -3: the channel axis of NCHW);
- the estimated parameter count (an over-estimate: sum over layers of ``(repeats + 2) * max(c1, c2)^2 * k^2``)
  <= ``MAX_ESTIMATED_PARAMS``, so a spec can never ask for more than a few GB of weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from yolokit.errors import SpecError

MAX_CLASSES = 100_000
MAX_CHANNELS = 8192
MAX_REPEATS = 64
MAX_LAYERS = 1024
MAX_MULTIPLE = 16.0
MAX_ESTIMATED_PARAMS = 2_000_000_000
_CONV_LIKE = {"Conv", "DWConv", "Focus"}
_CHANNEL_FIRST = {"Conv", "DWConv", "Bottleneck", "C2f", "C3k", "C3k2", "SPPF", "C2PSA", "C3", "SPP", "Focus",
                  "BottleneckCSP"}  # fmt: skip


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_spec_limits(spec: Mapping[str, Any], rows: list[Any], canonical: Any) -> None:
    """Raise ``SpecError`` for a value outside the bounds in the module docstring (rows already validated)."""
    nc = spec["nc"]
    if nc > MAX_CLASSES:
        raise SpecError(f"model spec: 'nc' is {nc}; expected at most {MAX_CLASSES} classes")
    reg_max = spec.get("reg_max", 16)
    if not _int(reg_max) or not 1 <= reg_max <= 64:
        raise SpecError(f"model spec: 'reg_max' must be an int in 1..64, found {reg_max!r}")
    if len(rows) > MAX_LAYERS:
        raise SpecError(f"model spec: {len(rows)} layer rows; expected at most {MAX_LAYERS}")
    depth, width, max_channels = _scale(spec)
    channels: list[int] = []
    estimate = 0
    for i, (source, repeats, module, args) in enumerate(rows):
        name = canonical(module)
        sources = source if isinstance(source, (list, tuple)) else [source]
        ch = [(channels[-1] if channels else 3) if j == -1 else channels[j] for j in sources]
        n = max(round(repeats * depth), 1) if repeats > 1 else repeats
        if repeats > MAX_REPEATS or n > MAX_REPEATS:
            raise SpecError(f"layer {i} ({module}): {n} repeats; expected at most {MAX_REPEATS}")
        c2, k = _layer(i, name, args, ch, nc, width, max_channels)
        channels.append(c2)
        estimate += (n + 2) * max(max(ch), c2) ** 2 * k * k
        if estimate > MAX_ESTIMATED_PARAMS:
            raise SpecError(f"model spec: layers 0..{i} would hold about {estimate:.3g} parameters (estimate); "
                            f"expected at most {MAX_ESTIMATED_PARAMS:.1g}: check the widths, repeats and scales")


def _scale(spec: Mapping[str, Any]) -> tuple[float, float, float]:
    scales, scale = spec.get("scales") or {}, spec.get("scale")
    depth, width, max_channels = scales[scale] if isinstance(scales, Mapping) and scale in scales else (1, 1, None)
    for key in ("depth_multiple", "width_multiple"):  # YOLOv5 layout
        value = spec.get(key)
        if value is not None and (not _number(value) or not 0 < value <= MAX_MULTIPLE):
            raise SpecError(f"model spec: '{key}' must be a number in (0, {MAX_MULTIPLE:g}], found {value!r}")
    depth, width = spec.get("depth_multiple", depth), spec.get("width_multiple", width)
    if not (0 < depth <= MAX_MULTIPLE and 0 < width <= MAX_MULTIPLE):
        raise SpecError(f"model spec: scale [depth {depth}, width {width}] must be in (0, {MAX_MULTIPLE:g}]")
    if max_channels is not None and max_channels > MAX_CHANNELS:
        raise SpecError(f"model spec: max_channels {max_channels} exceeds {MAX_CHANNELS}")
    return float(depth), float(width), float(max_channels or math.inf)


def _layer(i: int, name: str, args: list[Any], ch: list[int], nc: int, width: float,
           max_channels: float) -> tuple[int, int]:  # fmt: skip
    """``(output channels, kernel size for the estimate)`` of one row, checking its arguments."""
    if name == "Concat":
        dim = args[0] if args else 1
        if dim not in (1, -3) or not _int(dim):
            raise SpecError(f"layer {i} (Concat): dimension {dim!r} is not the channel axis; expected 1")
        return sum(ch), 1
    if name == "Upsample":
        factor = args[1] if len(args) > 1 else None
        if not _number(factor) or not 0 < factor <= 32:
            raise SpecError(f"layer {i} (Upsample): scale factor {factor!r}; expected a number in (0, 32]")
        return ch[0], 1
    if name in ("Detect", "Classify"):
        count = nc if not args or args[0] in ("nc", None) else args[0]
        if not _int(count) or not 1 <= count <= MAX_CLASSES:
            raise SpecError(f"layer {i} ({name}): class count {count!r}; expected 1..{MAX_CLASSES}")
        return count + 64 * 4, 3 if name == "Detect" else 1
    if name not in _CHANNEL_FIRST:
        return ch[0], 3
    c2 = nc if args and args[0] == "nc" else args[0] if args else None
    if not _int(c2):
        return ch[0], 3  # not a channel count at all: the builder names the row it cannot build
    if not 1 <= c2 <= MAX_CHANNELS * 16:
        raise SpecError(f"layer {i} ({name}): output channels {c2!r}; expected an int in 1..{MAX_CHANNELS}")
    scaled = c2 if c2 == nc else int(math.ceil(min(c2, max_channels) * width / 8) * 8)
    if not 1 <= scaled <= MAX_CHANNELS:
        raise SpecError(f"layer {i} ({name}): {scaled} output channels after scaling; expected 1..{MAX_CHANNELS}")
    for value in args[1:]:  # expansion ratios, groups, dilations, padding, inner repeats: small numbers only
        if _number(value) and not (0 <= value <= (4.0 if isinstance(value, float) else 64)):
            raise SpecError(f"layer {i} ({name}): argument {value!r} in {args!r} is out of range (ints 0..64, "
                            "ratios 0..4)")
    return scaled, _kernel(i, name, args)


def _kernel(i: int, name: str, args: list[Any]) -> int:
    if name in _CONV_LIKE:
        k = args[1] if len(args) > 1 else 1
        s = args[2] if len(args) > 2 else 1
        if not _int(k) or not 1 <= k <= 31:
            raise SpecError(f"layer {i} ({name}): kernel {k!r}; expected an int in 1..31")
        if s is not None and (not _int(s) or not 1 <= s <= 32):
            raise SpecError(f"layer {i} ({name}): stride {s!r}; expected an int in 1..32")
        return k
    if name == "SPPF":
        k = args[1] if len(args) > 1 else 5
        if not _int(k) or not 1 <= k <= 31 or k % 2 == 0:
            raise SpecError(f"layer {i} (SPPF): kernel {k!r}; expected an odd int in 1..31")
    if name == "SPP":
        ks = args[1] if len(args) > 1 else (5, 9, 13)
        if not isinstance(ks, (list, tuple)) or not ks or not all(_int(k) and 1 <= k <= 31 and k % 2 for k in ks):
            raise SpecError(f"layer {i} (SPP): kernels {ks!r}; expected odd ints in 1..31")
    return 3
