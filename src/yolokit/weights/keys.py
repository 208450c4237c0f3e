"""State-dict keys of wrapped models: ``DistributedDataParallel`` / ``DataParallel`` and ``torch.compile``.

A wrapper prefixes every key of the model it wraps: DDP and DataParallel with ``module.``, ``torch.compile`` (its
``OptimizedModule``) with ``_orig_mod.``, and both nest (``module._orig_mod.model.0.conv.weight``). Weights are
always stored and matched under the plain model's names, so readers strip the prefixes and writers save the plain
model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["WRAPPER_PREFIXES", "strip_wrapper_prefixes", "unwrap_model"]

WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_T = TypeVar("_T")


def strip_wrapper_prefixes(state_dict: Mapping[str, _T]) -> dict[str, _T]:
    """A copy of ``state_dict`` without the wrapper prefixes ``module.`` and ``_orig_mod.``.

    A prefix is removed only when **every** key carries it (a wrapper prefixes the whole state_dict), repeatedly, so
    ``module._orig_mod.model.0.conv.weight`` -> ``model.0.conv.weight`` while a model that merely has a submodule
    named ``module`` beside others keeps its names. Order and values are kept; an empty mapping stays empty.
    """
    out = dict(state_dict)
    stripped = True
    while out and stripped:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if all(isinstance(key, str) and key.startswith(prefix) for key in out):
                out = {key[len(prefix) :]: value for key, value in out.items()}
                stripped = True
    return out


def unwrap_model(model: Any) -> torch.nn.Module:
    """The plain model inside DDP / DataParallel (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers.

    Nested wrappers are all removed; any other module is returned as it is.
    """
    import torch

    parallel = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
    for _ in range(8):  # wrappers nest a few levels at most
        if isinstance(model, parallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), torch.nn.Module):
            model = model._orig_mod
        else:
            break
    return model
