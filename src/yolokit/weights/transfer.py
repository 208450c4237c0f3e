"""``transfer_weights(model, source)``: copy the tensors that match a model by name and shape.

    report = transfer_weights(model, "yolo11n.pt")  # a path, a WeightsFile, a state_dict or an nn.Module
    report.transferred, report.total       # 493, 499
    report.missing, report.mismatched      # [...], {"model.23.cv3.0.2.weight": ((5, 16, 1, 1), (3, 16, 1, 1))}

Names on both sides lose the wrapper prefixes ``module.`` / ``_orig_mod.`` (DDP, ``torch.compile``) and a wrapped
``model`` receives the tensors in the model it wraps. Tensors are copied into the model's own parameters, so their
dtype stays the model's (fp16 sources fill fp32 parameters).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from yolokit.errors import WeightsError

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    import torch

    from yolokit.weights.read import WeightsFile

__all__ = ["TransferReport", "transfer_weights"]
LOGGER = logging.getLogger(__name__)
Shape = tuple[int, ...]


@dataclasses.dataclass
class TransferReport:
    """What ``transfer_weights`` did: ``transferred`` of the model's ``total`` tensors were copied.

    ``skipped``: the model tensors left as they were, in state_dict order; each is in ``missing`` (the source has
    no tensor of that name) or in ``mismatched`` (name -> ``(model shape, source shape)``). ``unexpected``: source
    tensors the model has no place for. ``source`` describes where the tensors came from. Two reports are equal
    when ``transferred``, ``total`` and ``skipped`` are.
    """

    transferred: int
    total: int
    skipped: list[str] = dataclasses.field(default_factory=list)
    missing: list[str] = dataclasses.field(default_factory=list, compare=False)
    mismatched: dict[str, tuple[Shape, Shape]] = dataclasses.field(default_factory=dict, compare=False)
    unexpected: list[str] = dataclasses.field(default_factory=list, compare=False)
    source: str = dataclasses.field(default="", compare=False)

    @property
    def reasons(self) -> dict[str, str]:
        """Skipped name -> ``"missing"`` or ``"shape mismatch"``."""
        return {name: "missing" if name not in self.mismatched else "shape mismatch" for name in self.skipped}


def transfer_weights(
    model: torch.nn.Module,
    source: str | Path | WeightsFile | Mapping[str, torch.Tensor] | torch.nn.Module,
    *,
    strict: bool = False,
) -> TransferReport:
    """Copy into ``model`` every tensor of ``source`` whose name and shape match; returns a ``TransferReport``.

    ``source``: a weights file path (read once, any readable format), a ``WeightsFile``, a state_dict, or a module.
    Logs ``Transferred X/Y tensors from <source>`` and the skipped names with their reason. ``strict=True`` requires
    every model tensor present with its shape and no extra tensors, else raises ``WeightsError`` (naming the keys
    and shapes) and changes nothing.
    """
    import torch

    from yolokit.weights.keys import strip_wrapper_prefixes, unwrap_model
    from yolokit.weights.native import check_fit

    if not isinstance(model, torch.nn.Module):
        raise WeightsError(f"transfer_weights expects a torch model first, found {type(model).__name__}")
    target_model = unwrap_model(model)
    tensors, label = _source_tensors(source)
    tensors = strip_wrapper_prefixes(tensors)
    target = target_model.state_dict()
    if strict:
        check_fit(label, target, tensors, strict=True)
    report = _match(target, tensors, label)
    skipped = set(report.skipped)
    target_model.load_state_dict({k: tensors[k] for k in target if k not in skipped}, strict=False)
    _log(report)
    return report


def _source_tensors(source: Any) -> tuple[dict[str, Any], str]:
    """``(name -> tensor, label for messages)`` of any accepted source."""
    import torch

    from yolokit.weights.keys import unwrap_model
    from yolokit.weights.read import WeightsFile, read_weights

    if isinstance(source, (str, os.PathLike)):
        source = read_weights(source)
    if isinstance(source, WeightsFile):
        return dict(source.state_dict), str(source.path)
    if isinstance(source, torch.nn.Module):
        inner = unwrap_model(source)
        return inner.state_dict(), f"a {type(inner).__name__}"
    if isinstance(source, Mapping):
        bad = next((k for k, v in source.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
        if bad is not None:
            raise WeightsError(f"transfer_weights: state_dict entry {bad!r} is not a str name -> tensor; pass a "
                               "model's state_dict()")  # fmt: skip
        return dict(source), "a state_dict"
    raise WeightsError(
        f"transfer_weights expects a file path, a WeightsFile, a state_dict or a torch module as source, "
        f"found {type(source).__name__}"
    )


def _match(target: dict[str, Any], tensors: dict[str, Any], label: str) -> TransferReport:
    """Sort the model's tensors into transferable, missing and mismatched ones."""
    missing: list[str] = []
    mismatched: dict[str, tuple[Shape, Shape]] = {}
    for name, value in target.items():
        found = tensors.get(name)
        if found is None:
            missing.append(name)
        elif tuple(found.shape) != tuple(value.shape):
            mismatched[name] = (tuple(value.shape), tuple(found.shape))
    absent = set(missing)
    skipped = [name for name in target if name in mismatched or name in absent]
    return TransferReport(
        transferred=len(target) - len(skipped),
        total=len(target),
        skipped=skipped,
        missing=missing,
        mismatched=mismatched,
        unexpected=[name for name in tensors if name not in target],
        source=label,
    )


def _log(report: TransferReport) -> None:
    LOGGER.info("Transferred %d/%d tensors from %s", report.transferred, report.total, report.source)
    if report.skipped:
        LOGGER.info(
            "Skipped %d tensors (%d missing from the source, %d of a different shape): %s",
            len(report.skipped), len(report.missing), len(report.mismatched), ", ".join(report.skipped),
        )  # fmt: skip
