"""The inference copy of a model, made one way for every caller (backends, export).

:func:`inference_copy` deep-copies a model (unless told not to), moves it to the device in fp32, folds each
BatchNorm into its conv (``fuse()``, when the model has one), switches to eval, casts to the wanted dtype and memory
layout and freezes every parameter. Fusing happens in fp32, before any cast to half. The caller's model is left
unchanged when ``copy=True``.
"""

from __future__ import annotations

import copy as copy_module

import torch
from torch import nn

__all__ = ["inference_copy"]


def inference_copy(
    model: nn.Module,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    *,
    fuse: bool = True,
    copy: bool = True,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> nn.Module:
    """An eval-mode, gradient-free model for inference.

    Args:
        model: any ``nn.Module``; ``fuse()`` is called when it has one (``DetectionModel``, ``Conv``).
        device: where the copy lives.
        dtype: floating dtype of the copy's parameters and buffers (``torch.float16`` for half).
        fuse: fold BatchNorm into the convs (outputs equal within float rounding).
        copy: work on a deep copy (False: ``model`` itself is changed and returned).
        memory_format: ``torch.channels_last`` for the NHWC layout of 4-D weights.

    Returns:
        The prepared module (``model`` itself when ``copy=False``).
    """
    prepared = copy_module.deepcopy(model) if copy else model
    prepared.to(device=device, dtype=torch.float32)
    if fuse and callable(getattr(prepared, "fuse", None)):
        prepared.fuse()
    prepared.eval()
    prepared.to(device=device, dtype=dtype, memory_format=memory_format)
    prepared.requires_grad_(False)
    return prepared
