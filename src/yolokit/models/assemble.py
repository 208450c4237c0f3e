"""The one loop that turns a spec's rows into layers, shared by the anchor-free and the YOLOv5 builders."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from yolokit.errors import SpecError
from yolokit.models.spec import canonical_module_name, spec_rows

__all__ = ["assemble_layers"]


def assemble_layers(spec: Mapping[str, Any], ctx: Any, table: Mapping[str, Callable[..., tuple[nn.Module, int]]],
                    resolve: Callable[[Any], Any], channels: int = 3) -> tuple[nn.Sequential, list[int]]:
    """The layers of ``spec``'s rows, each built by ``table[name](input channels, resolved args, repeats, ctx)``.

    ``ctx`` carries ``depth`` (the repeat multiplier); ``resolve`` maps a spec argument (``"nc"``...) to its value.
    Shared by the anchor-free builder here and the YOLOv5 one (``models/yolov5.py``), whose tables differ.

    Returns:
        ``nn.Sequential`` of layers (each with attributes ``i``, ``f``, ``type``) and the sorted indices of
        layers whose outputs later layers read.
    """
    out_channels: list[int] = []
    layers: list[nn.Module] = []
    save: set[int] = set()
    for i, (source, repeats, module, args) in enumerate(spec_rows(spec)):
        name = canonical_module_name(module) or str(module)
        if name not in table:
            raise SpecError(f"layer {i}: unknown module type {module!r}; known types: {', '.join(table)}")
        sources = source if isinstance(source, list) else [source]
        ch = [(out_channels[-1] if out_channels else channels) if j == -1 else out_channels[j] for j in sources]
        n = max(round(repeats * ctx.depth), 1) if repeats > 1 else repeats
        try:
            layer, c2 = table[name](ch, [resolve(a) for a in args], n, ctx)
        except (TypeError, ValueError, IndexError, RuntimeError) as exc:
            raise SpecError(f"layer {i} ({module}): cannot build from args {args!r} with input channels {ch}: {exc}"
                            ) from exc
        layer.i, layer.f, layer.type = i, source, name
        save.update(j % i for j in sources if j != -1)
        layers.append(layer)
        out_channels.append(c2)
    return nn.Sequential(*layers), sorted(save)
