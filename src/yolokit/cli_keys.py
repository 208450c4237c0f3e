"""The key=value words of ``yolokit``'s model modes (info, predict, val, export, train), checked before any model is
loaded: the settings classes of each mode and task, the command's own keys (``model``, ``trusted``, ...), range checks
when the task is known, ``device=`` against this machine's GPUs, ``trusted=True`` and ``train resume=RUN_DIR``.

Raises ``ConfigError`` (one line) for a wrong key or value; ``yolokit.cli`` prints it. Nothing here prints.
"""

from __future__ import annotations

from pathlib import Path

from yolokit.config import ExportConfig, InfoConfig, config_keys, make_config, parse_key_values, unknown_key_message
from yolokit.errors import ConfigError
from yolokit.tasks import get_task, task_names

__all__ = ["MODEL_MODES", "command_keys", "mode_configs", "model_settings", "resume_model"]

MODEL_MODES = ("info", "predict", "val", "export", "train")  # modes that take model= (and so a TASK word)


def command_keys(mode: str) -> list[tuple[str, str, str, str]]:
    """``(key, type, default, meaning)`` of the keys a model mode takes that no settings class holds (the
    command's own: ``model``, ``trusted``, predict's ``source``, export's ``register``), first in its help."""
    rows = [("model", "str", "(required)", "weights file, published name, URL, registry://NAME or a spec YAML"),
            ("trusted", "bool", "False", "load a TorchScript model= yolokit did not export here (its code runs)")]
    if mode == "predict":
        rows += [("source", "str", "(required)", "image, folder, glob, URL, video, or a .txt list of them"),
                 ("save", "bool", "True (CLI)", "save annotated images/videos (Python API default: False)")]
    if mode == "export":
        rows += [("register", "str", '""', "register the exported file in the registry under this name"),
                 ("registry", "str", '""', "folder of register= ($YOLOKIT_REGISTRY, else ~/.yolokit/registry)")]
    return rows


def mode_configs(mode: str, task: str | None) -> list[type]:
    """The settings classes ``mode`` may use: the given task's, or (no task given) those of every registered task."""
    if mode == "info":
        return [InfoConfig]
    if mode == "export":
        return [ExportConfig]
    entries = [get_task(task)] if task else [get_task(name) for name in task_names()]
    return list(dict.fromkeys(entry.load(f"{mode}_config") for entry in entries))


def model_settings(rest: list[str], mode: str, extra: tuple[str, ...] = ()) -> tuple[str, str | None, dict]:
    """(model, task, key=values) of a model mode, every key and value checked before any model is loaded.

    ``task=`` comes from ``yolokit TASK MODE``. ``extra`` keys (``source``) are the command's own. When every task
    the model may have uses one settings class, the values are range-checked here (``conf=1.5`` fails before a
    download); otherwise the facade checks them once the model (and so its task) is known.
    """
    values = parse_key_values(rest)
    model = values.pop("model", "")
    task = values.pop("task", "") or None
    if task is not None:
        get_task(task)
    _trust_if_asked(model, values.pop("trusted", "false"))
    if not model:
        raise ConfigError(f"{mode} needs model=PATH (a .pt/.safetensors file or a spec such as yolo26n.yaml)")
    classes = mode_configs(mode, task)
    known = [key for cls in classes for key in config_keys(cls) if key != "model"]
    for key in values:
        if key not in known and key not in extra:
            raise ConfigError(unknown_key_message(key, ["model", *dict.fromkeys(known), *extra, "trusted"], mode,
                                                  elsewhere=_mode_keys(task)))
    if len(classes) == 1:
        make_config(classes[0], {k: v for k, v in values.items() if k not in extra})
    if "device" in values:  # a GPU this machine lacks: one line before any model is read or downloaded
        from yolokit.config import check_device
        from yolokit.model import _check_device_present
        from yolokit.utils.dist import check_device_list

        listed = "," in values["device"]  # device=0,1: every GPU of the list
        for name in check_device_list("device", values["device"]).split(",") if listed else [values["device"]]:
            _check_device_present(check_device("device", name))
    return model, task, values


def _trust_if_asked(model: str, trusted: str) -> None:
    """``trusted=True``: the TorchScript file ``model`` (its current bytes) may be loaded in this run; its code runs."""
    from yolokit.utils.settings import convert_value

    if convert_value("trusted", trusted, bool) and Path(model).is_file():
        from yolokit.export.torchscript import is_torchscript
        from yolokit.export.torchscript_trust import trust_torchscript

        if is_torchscript(model):
            trust_torchscript(model)


def _mode_keys(task: str | None) -> dict[str, list[str]]:
    """Every model mode's keys (for "'epochs' is a setting of train" instead of a far-fetched suggestion)."""
    return {mode: [key for cls in mode_configs(mode, task) for key in config_keys(cls)] for mode in MODEL_MODES}


def resume_model(rest: list[str]) -> list[str]:
    """``yolokit train resume=RUN_DIR`` needs no ``model=``: the run's ``weights/last.safetensors`` is loaded."""
    values = parse_key_values(rest)
    resume = values.get("resume", "")
    if "model" in values or resume.strip().lower() in ("", "true", "false", "yes", "no", "1", "0", "on", "off"):
        return rest
    return [*rest, f"model={Path(resume) / 'weights' / 'last.safetensors'}"]
