"""Model summary: leaf-layer, parameter and gradient counts, and GFLOPs counted analytically (no profiler).

FLOPs are counted by forward hooks on every ``Conv2d`` (``2 * Cout * Hout * Wout * Cin / groups * kh * kw``) and
``BatchNorm2d`` (``2`` per output element) over one zero image. Activations, pooling and the attention matmuls
are not counted. Conv and BN costs grow exactly with ``H * W`` when the sides are multiples of the largest stride,
so the count runs on a ``stride x stride`` image and is scaled to ``imgsz``. For end-to-end (YOLO26) heads both
branches are counted, as both are part of the network.
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
    def conv_hook(module: nn.Conv2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        kh, kw = module.kernel_size
        per_output = 2 * (module.in_channels // module.groups) * kh * kw
        total[0] += per_output * output[0].numel()

    def bn_hook(module: nn.BatchNorm2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        total[0] += 2 * output[0].numel()

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.BatchNorm2d):
            handles.append(module.register_forward_hook(bn_hook))
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
    total = [0.0]
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
    return total[0] * (height * width) / (proxy * proxy) / 1e9


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
