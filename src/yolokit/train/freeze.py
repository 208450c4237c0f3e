"""Freezing layers for fine-tuning, and keeping them frozen for the whole run.

    report = freeze_layers(model, 10)            # layers 0-9 (i.e. model.0. ... model.9.), plus the DFL conv
    report = freeze_layers(model, [0, "model.1*", "23.cv2"])
    train_mode(model, report)                    # model.train(), frozen BatchNorm layers back to eval
    assert_frozen(model, report)                 # raises if anything frozen became trainable again

``freeze`` values:

- ``None`` / ``0`` / ``[]``: nothing but the DFL conv (a fixed projection ``arange(reg_max)``, always frozen).
- ``N`` (int): the layers with index ``0 .. N-1``. **``freeze=10`` freezes layers 0 to 9** (ten layers: the
  backbone of the v8/v11/26 specs), not 0 to 10.
- a list of items, each one of:
  - a layer index (``3`` or ``"3"``): every parameter named ``model.3.…``;
  - a glob (contains ``*``, ``?`` or ``[``): ``fnmatch`` against the parameter name, or against the name without
    its leading ``model.`` (``"model.1*"`` and ``"1*"`` both mean layers 1 and 10-19; ``"*.bn.*"``);
  - a name fragment: matches a parameter whose dotted name contains it as whole components (``"23.cv2"`` matches
    ``model.23.cv2.0.conv.weight``; ``"model.0."`` matches layer 0 only, never ``model.10.``).

An item that matches no parameter is an error (a typo would otherwise silently train everything). Parameters the
model already had frozen (``requires_grad=False`` set by the user) stay frozen: nothing is ever unfrozen here.
BatchNorm layers whose parameters are all frozen are *held in eval mode*: their running statistics stay those of the
pretrained weights (:func:`train_mode` / :func:`keep_frozen_bn_eval` after every ``model.train()``).
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from yolokit.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = ["FreezeReport", "assert_frozen", "freeze_layers", "keep_frozen_bn_eval", "train_mode"]

LOGGER = logging.getLogger(__name__)
_GLOB_CHARS = frozenset("*?[")
ALWAYS_FROZEN = (".dfl.",)  # fragments of parameters that are fixed projections


@dataclass(frozen=True)
class FreezeReport:
    """What :func:`freeze_layers` froze.

    Attributes:
        frozen_names: every parameter name with ``requires_grad=False`` afterwards (in ``named_parameters`` order),
            including the DFL conv and parameters that were already frozen.
        trainable_params: number of trainable parameter values (sum of ``numel``).
        frozen_params: number of frozen parameter values.
        frozen_bn: names of the BatchNorm modules held in eval mode (all their parameters frozen).
    """

    frozen_names: tuple[str, ...]
    trainable_params: int
    frozen_params: int
    frozen_bn: tuple[str, ...] = ()


def _layer_count(model: nn.Module) -> int:
    layers = getattr(model, "model", None)
    return len(layers) if layers is not None and hasattr(layers, "__len__") else 0


def _as_items(freeze: Any, n_layers: int) -> list[int | str]:
    """``freeze`` -> a list of items (ints for layer indices, strings for globs and fragments)."""
    if freeze is None or freeze is False:
        return []
    if isinstance(freeze, bool):
        raise ConfigError("freeze: expected a layer count N (layers 0..N-1) or a list of layers/names, found True")
    if isinstance(freeze, int):
        if not 0 <= freeze <= n_layers:
            raise ConfigError(f"freeze={freeze}: expected a layer count between 0 and {n_layers} (freezes layers "
                              f"0..N-1 of this {n_layers}-layer model)")
        return list(range(freeze))
    if isinstance(freeze, str):  # CLI text: "10" (a count) or "0,model.1*,23.cv2" / "[0, 1]" (items)
        text = freeze.strip().strip("[]")
        if text.isdigit():
            return _as_items(int(text), n_layers)
        freeze = [part.strip().strip("'\"") for part in text.split(",") if part.strip()]
    if not isinstance(freeze, Sequence):
        raise ConfigError(f"freeze: expected an int or a list of layer indices / names / globs, found "
                          f"{type(freeze).__name__}")
    items: list[int | str] = []
    for item in freeze:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise ConfigError(f"freeze: list items must be layer indices or name strings, found {item!r}")
        text = str(item).strip()
        items.append(int(text) if text.lstrip("-").isdigit() else text)
    return items


def _matcher(item: int | str, n_layers: int) -> Any:
    """A predicate over parameter names for one ``freeze`` item."""
    if isinstance(item, int):
        if not 0 <= item < n_layers:
            raise ConfigError(f"freeze: layer index {item} is out of range; this model has layers 0-{n_layers - 1}")
        prefix = f"model.{item}."
        return lambda name: name.startswith(prefix)
    if _GLOB_CHARS & set(item):
        return lambda name: fnmatch.fnmatchcase(name, item) or (
            name.startswith("model.") and fnmatch.fnmatchcase(name[len("model."):], item))
    fragment = f".{item.strip('.')}."
    return lambda name: fragment in f".{name}."


def _no_match(model: nn.Module, item: int | str, n_layers: int) -> ConfigError:
    if isinstance(item, int):
        kind = getattr(model.model[item], "type", type(model.model[item]).__name__)
        return ConfigError(f"freeze: layer {item} ({kind}) has no parameters to freeze; list layers that have some")
    return ConfigError(
        f"freeze: {item!r} matches no parameter of the model; expected a layer index 0-{n_layers - 1}, a prefix "
        "such as 'model.0.', a fragment such as '23.cv2' or a glob such as 'model.1*'")


def _frozen_bn(model: nn.Module, frozen: set[str]) -> tuple[str, ...]:
    from torch import nn

    held = []
    for module_name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = [f"{module_name}.{p}" for p, _ in module.named_parameters(recurse=False)]
            if params and all(p in frozen for p in params):
                held.append(module_name)
    return tuple(held)


def _describe(items: Iterable[int | str]) -> str:
    items = list(items)
    ints = [i for i in items if isinstance(i, int)]
    if ints and ints == list(range(len(ints))) and len(ints) == len(items):
        return f"layers 0-{len(ints) - 1}"
    return ", ".join(map(str, items)) or "nothing"


def freeze_layers(model: nn.Module, freeze: int | str | Sequence[int | str] | None) -> FreezeReport:
    """Set ``requires_grad=False`` on the parameters ``freeze`` selects (module docstring), plus the DFL conv.

    ``freeze=N`` freezes layers ``0 .. N-1`` (``freeze=10``: layers 0-9). Never sets ``requires_grad=True``.
    Logs the frozen layers and ``trainable`` vs ``frozen`` parameter counts; holds frozen BatchNorm in eval mode.

    Raises:
        ConfigError: a count out of ``0..len(layers)``, an index out of range, or an item matching no parameter.
    """
    n_layers = _layer_count(model)
    items = _as_items(freeze, n_layers)
    named = list(model.named_parameters())
    to_freeze: set[str] = set()
    by_count = isinstance(freeze, int) or (isinstance(freeze, str) and freeze.strip().strip("[]").isdigit())
    for item in items:
        matches = {name for name, _ in named if _matcher(item, n_layers)(name)}
        if not matches and not by_count:  # freeze=N also covers layers without parameters (Upsample, Concat)
            raise _no_match(model, item, n_layers)
        to_freeze |= matches
    to_freeze |= {name for name, _ in named if any(f in f".{name}" for f in ALWAYS_FROZEN)}
    already = {name for name, p in named if not p.requires_grad} - to_freeze
    for name, param in named:
        if name in to_freeze:
            param.requires_grad_(False)
    frozen = [name for name, p in named if not p.requires_grad]
    report = FreezeReport(
        frozen_names=tuple(frozen),
        trainable_params=sum(p.numel() for _, p in named if p.requires_grad),
        frozen_params=sum(p.numel() for _, p in named if not p.requires_grad),
        frozen_bn=_frozen_bn(model, set(frozen)),
    )
    keep_frozen_bn_eval(model, report)
    if not report.trainable_params:
        LOGGER.warning("freeze=%s froze every parameter: training would change nothing", freeze)
    LOGGER.info("freeze=%s: %s frozen (%d tensors%s); trainable parameters %s, frozen %s", freeze, _describe(items),
                len(frozen), f", {len(already)} already frozen in the model" if already else "",
                f"{report.trainable_params:,}", f"{report.frozen_params:,}")
    return report


def keep_frozen_bn_eval(model: nn.Module, report: FreezeReport) -> None:
    """Put the BatchNorm modules of ``report.frozen_bn`` in eval mode (their running stats stop updating)."""
    modules = dict(model.named_modules())
    for name in report.frozen_bn:
        modules[name].eval()


def train_mode(model: nn.Module, report: FreezeReport | None, mode: bool = True) -> nn.Module:
    """``model.train(mode)``, then frozen BatchNorm back to eval. Call it instead of ``model.train()``."""
    model.train(mode)
    if report is not None:
        keep_frozen_bn_eval(model, report)
    return model


def assert_frozen(model: nn.Module, report: FreezeReport) -> None:
    """Raise ``ConfigError`` if a parameter of ``report`` became trainable, or a held BatchNorm is in train mode.

    The trainer calls it before building the optimizer and after hooks ran, so that whatever the user froze is
    never silently trained.
    """
    params = dict(model.named_parameters())
    thawed = [name for name in report.frozen_names if name in params and params[name].requires_grad]
    if thawed:
        raise ConfigError(
            f"{len(thawed)} frozen parameters became trainable again (first: {thawed[0]}); something set "
            "requires_grad=True after freezing (a hook or callback?): choose the frozen layers with freeze= instead")
    modules = dict(model.named_modules())
    training = [name for name in report.frozen_bn if name in modules and modules[name].training]
    if training:
        raise ConfigError(
            f"{len(training)} frozen BatchNorm layers are in train mode (first: {training[0]}), so their running "
            "statistics would change; call yolokit.train.freeze.train_mode(model, report) instead of model.train()")
