"""Model summary: leaf-layer, parameter and gradient counts, and GFLOPs counted analytically (no profiler).

GFLOPs follow the reference implementation's count (its ``thop`` profile, MACs x 2), so the figures printed by
``info`` are the reference's: 6.2 for YOLO26n, 6.7 for YOLO11n, 8.9 for YOLOv8n at 640 (tested to the digit). Forward
hooks over one zero image count

- every ``Conv2d``: ``2 * Cin / groups * kh * kw`` per output element (no bias term);
- every ``BatchNorm2d``: ``8`` per output element (normalise + affine = 4 MACs, as ``thop`` counts them; folded
  into the convolution after ``fuse()``, so a fused model counts 0 here);
- the DFL: ``2 * bins`` per output element (its expectation is a matmul with the bin values);
- attention (``Attention``): the two matmuls, ``2 * heads * N**2 * (key_dim + head_dim)`` for ``N = h * w``
  positions;
- ``Linear``: ``2 * in_features`` per output element, and ``AdaptiveAvgPool2d`` ``2`` per input element plus ``2``
  per output element (a classification head).

Activations, pooling, upsampling, additions and concatenations count 0. Conv, BN and DFL costs grow exactly with
``H * W`` when the sides are multiples of the largest stride, attention with ``(H * W) ** 2`` and a Linear head not at
all, so the count runs on a ``stride x stride`` image and each part is scaled to ``imgsz``. For end-to-end (YOLO26)
heads both branches are counted, as both are part of the network (as the reference does for an unfused model).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from yolokit.models.spec import model_display_name

__all__ = ["count_gflops", "count_layers", "model_info"]

logger = logging.getLogger(__name__)


def count_layers(model: nn.Module) -> int:
    """Number of leaf modules in ``model.named_modules()`` (a module shared by several parents counts once)."""
    return sum(1 for _, module in model.named_modules() if not any(True for _ in module.children()))


@contextmanager
def _flop_hooks(model: nn.Module, total: list[float]) -> Iterator[None]:
    """Add each hooked layer's FLOPs (per image) to ``total``: ``[area-proportional, quadratic, fixed]`` parts
    (a single-item list collects the area-proportional part only)."""
    from yolokit.nn.attention import Attention
    from yolokit.nn.heads import DFL

    def add(part: int, value: float) -> None:
        if part < len(total):
            total[part] += value

    def conv_hook(module: nn.Conv2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        kh, kw = module.kernel_size
        add(0, 2 * (module.in_channels // module.groups) * kh * kw * output[0].numel())

    def bn_hook(module: nn.BatchNorm2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        add(0, 8 * output[0].numel())

    def dfl_hook(module: DFL, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        add(0, 2 * module.c1 * output[0].numel())

    def attention_hook(module: Attention, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        n = inputs[0].shape[-2] * inputs[0].shape[-1]
        add(1, 2 * module.num_heads * n * n * (module.key_dim + module.head_dim))

    def linear_hook(module: nn.Linear, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        add(2, 2 * module.in_features * output[0].numel())

    def pool_hook(module: nn.AdaptiveAvgPool2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        add(0, 2 * inputs[0][0].numel())  # one add per input (non-overlapping windows)
        add(2, 2 * output[0].numel())  # one divide per output

    hooks = ((nn.Conv2d, conv_hook), (nn.BatchNorm2d, bn_hook), (DFL, dfl_hook), (Attention, attention_hook),
             (nn.Linear, linear_hook), (nn.AdaptiveAvgPool2d, pool_hook))
    handles = []
    for module in model.modules():
        hook = next((fn for kind, fn in hooks if isinstance(module, kind)), None)
        if hook is not None:
            handles.append(module.register_forward_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def count_gflops(model: nn.Module, imgsz: int | tuple[int, int] = 640) -> float:
    """GFLOPs of one forward pass on a ``(1, C, H, W)`` image (``imgsz`` int or ``(H, W)``).

    ``model`` is a ``DetectionModel`` or a ``ClassificationModel``; its mode and BN statistics are unchanged.
    """
    height, width = (imgsz, imgsz) if isinstance(imgsz, int) else (int(imgsz[0]), int(imgsz[1]))
    proxy = int(max(model.stride.max().item(), 32))
    param = next(model.parameters())
    x = torch.zeros(1, model.channels, proxy, proxy, dtype=param.dtype, device=param.device)
    total = [0.0, 0.0, 0.0]  # area-proportional, quadratic in the area, fixed
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _flop_hooks(model, total):
            feats = model.head_inputs(x)
            head = model.head
            if not hasattr(head, "decode"):  # a classification head: one pass
                head(feats)
            else:
                head.decode(head.forward_raw(feats))
                if head.end2end:
                    head.decode(head.forward_raw(feats, one2one=True))
    finally:
        model.train(was_training)
    ratio = (height * width) / (proxy * proxy)
    return (total[0] * ratio + total[1] * ratio**2 + total[2]) / 1e9


def _log_parameter_table(model: nn.Module) -> None:
    columns = ("layer", "name", "type", "gradient", "parameters", "shape", "mu", "sigma", "dtype")
    logger.info("%5s %40s %18s %9s %12s %20s %10s %10s %15s", *columns)
    for i, (name, param) in enumerate(model.named_parameters()):
        owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        data = param.detach().float()
        sigma = data.std().item() if data.numel() > 1 else 0.0
        logger.info(
            "%5d %40s %18s %9s %12d %20s %10.3g %10.3g %15s", i, name, type(owner).__name__, param.requires_grad,
            param.numel(), str(list(param.shape)), data.mean().item(), sigma, str(param.dtype),
        )


def model_info(
    model: nn.Module, verbose: bool = True, detailed: bool = False, imgsz: int | tuple[int, int] = 640
) -> tuple[int, int, int, float]:
    """Summarise a DetectionModel.

    Logs (when ``verbose``) ``"{Name} summary{ (fused)}: {L:,} layers, {P:,} parameters, {G:,} gradients,
    {F:.1f} GFLOPs"`` and, when ``detailed``, first a per-parameter table.

    Returns:
        ``(layers, parameters, gradients, gflops)``: leaf modules, parameter count, count of parameters that
        require grad, GFLOPs at ``imgsz``.
    """
    layers = count_layers(model)
    parameters = sum(p.numel() for p in model.parameters())
    gradients = sum(p.numel() for p in model.parameters() if p.requires_grad)
    gflops = count_gflops(model, imgsz)
    if verbose:
        if detailed:
            _log_parameter_table(model)
        fused = " (fused)" if model.is_fused() else ""
        logger.info(
            "%s summary%s: %s layers, %s parameters, %s gradients, %.1f GFLOPs",
            model_display_name(model.spec), fused, f"{layers:,}", f"{parameters:,}", f"{gradients:,}", gflops,
        )
    return layers, parameters, gradients, gflops
