"""``yolokit`` command line: ``yolokit [TASK] MODE key=value ...``. The only module that prints or exits.

    yolokit version
    yolokit info model=yolo26n.yaml [detailed=True imgsz=640]
    yolokit predict model=best.pt source=images/ conf=0.25 save=True save_txt=True
    yolokit val model=best.pt data=data.yaml imgsz=640 batch=16
    yolokit train model=yolo26n.yaml data=data.yaml epochs=100 imgsz=640   # or: yolokit train resume=RUN_DIR
    yolokit export model=best.pt format=onnx [imgsz=640 dynamic=True nms=True file=out.onnx]
    yolokit benchmark model=best.pt data=data.yaml imgsz=640  # PyTorch, ONNX fp32/fp16/INT8, TorchScript
    yolokit inspect FILE [--json]
    yolokit convert IN OUT [--half]
    yolokit data synth OUT --train N --val M --imgsz S --seed K [--task detect|classify]
    yolokit demo [out=demo_out] [--quick]   # train, fine-tune, export, INT8, registry, predict (~5 min)
    yolokit registry register|alias|unalias|list|show|history|lineage|audit|diff|pull|delete|gc ...

``TASK`` (``detect``; see ``yolokit.tasks``) may precede a model mode (``yolokit detect predict ...``): the model must
be of that task. A ``YolokitError`` prints one line on stderr and exits with status 2; other exceptions keep their
traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from yolokit.config import ExportConfig, InfoConfig, config_keys, make_config, parse_key_values, unknown_key_message
from yolokit.errors import ConfigError, YolokitError
from yolokit.tasks import get_task, task_names

MODEL_MODES = ("info", "predict", "val", "export", "train")  # modes that take model= (and so a TASK word)
# Modes and tasks of the reference implementation that yolokit does not have (yet): said plainly.
UNSUPPORTED_MODES = {
    "track": "tracking is not supported by yolokit: run 'yolokit predict' on the video",
    "solutions": "'solutions' (counting, heatmaps, ...) are not supported by yolokit",
}
REFERENCE_TASKS = ("segment", "classify", "pose", "obb")
HELP_MODES = ("info", "predict", "val", "export", "train", "benchmark", "demo", "version", "settings", "checks")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        args = ["help"]
    restore = _configure_logging()
    try:
        mode, rest = _mode_and_rest(args)
        if mode in HELP_MODES and any(word in ("-h", "--help", "help") for word in rest):
            print(_mode_help(mode, rest))
            return 0
        if rest == ["help"] and mode != "help":  # argparse modes (inspect, convert, data, registry): their --help
            rest = ["--help"]
        return COMMANDS[mode](rest)
    except YolokitError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 2
    except SystemExit as done:  # argparse's --help of inspect/convert/data/registry
        if done.code in (0, None):
            return 0
        raise
    finally:
        restore()


def _mode_and_rest(args: list[str]) -> tuple[str, list[str]]:
    """``[TASK] MODE words...`` -> (MODE, words); a TASK word becomes ``task=TASK`` for the model modes."""
    task = None
    if args[0] not in COMMANDS and (args[0] in task_names() or args[0] in REFERENCE_TASKS
                                    or (len(args) > 1 and args[1] in (*COMMANDS, *UNSUPPORTED_MODES))):
        task = get_task(args[0]).name  # an unknown task: one line listing the known ones
        args = args[1:]
        if not args:
            raise ConfigError(f"'yolokit {task}' needs a mode: e.g. 'yolokit {task} predict model=... source=...'")
    mode, rest = args[0], args[1:]
    if mode not in COMMANDS:
        if mode in UNSUPPORTED_MODES:
            raise ConfigError(UNSUPPORTED_MODES[mode])
        raise ConfigError(_unknown_mode(mode))
    if task is not None:
        if mode not in MODEL_MODES:
            raise ConfigError(f"mode '{mode}' takes no task: run 'yolokit {mode} ...'")
        rest = [f"task={task}", *rest]
    return mode, rest


def _configure_logging() -> Callable[[], None]:
    """Send yolokit's INFO logs to stdout as plain lines for this command; return the function that undoes it."""
    from yolokit.utils.log import StdoutHandler

    logger = logging.getLogger("yolokit")
    handler = StdoutHandler()
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]

    return restore


def _split_model(rest: list[str], mode: str, allowed: list[str]) -> tuple[str, dict[str, str]]:
    """Take ``model=`` out of key=value words; the remaining keys must belong to ``allowed``."""
    values = parse_key_values(rest)
    model = values.pop("model", "")
    if not model:
        raise ConfigError(f"{mode} needs model=PATH (a .pt/.safetensors file or a spec such as yolo26n.yaml)")
    for key in values:
        if key not in allowed:
            raise ConfigError(unknown_key_message(key, ["model", *allowed], mode))
    return model, values


def _mode_configs(mode: str, task: str | None) -> list[type]:
    """The settings classes ``mode`` may use: the given task's, or (no task given) those of every registered task."""
    if mode == "info":
        return [InfoConfig]
    if mode == "export":
        return [ExportConfig]
    entries = [get_task(task)] if task else [get_task(name) for name in task_names()]
    return list(dict.fromkeys(entry.load(f"{mode}_config") for entry in entries))


def _model_settings(rest: list[str], mode: str, extra: tuple[str, ...] = ()) -> tuple[str, str | None, dict]:
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
    classes = _mode_configs(mode, task)
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


def _unknown_mode(word: str) -> str:
    """``"unknown mode 'predcit': did you mean 'predict'?"`` (only a close match), else the list of modes."""
    from yolokit.config import close_matches

    close = close_matches(word, list(dict.fromkeys([*COMMANDS, *UNSUPPORTED_MODES])))
    if not close:
        return f"unknown mode '{word}': modes: {', '.join(COMMANDS)} ('yolokit help' says more)"
    lacking = f" ({UNSUPPORTED_MODES[close[0]]})" if close[0] not in COMMANDS else ""
    return f"unknown mode '{word}': did you mean '{close[0]}'?{lacking}"


def _mode_keys(task: str | None) -> dict[str, list[str]]:
    """Every model mode's keys (for "'epochs' is a setting of train" instead of a far-fetched suggestion)."""
    return {mode: [key for cls in _mode_configs(mode, task) for key in config_keys(cls)] for mode in MODEL_MODES}


def _mode_help(mode: str, rest: list[str]) -> str:
    """``yolokit MODE --help``: the keys of a model mode (generated from its settings classes), or one line."""
    from yolokit.cli_help import MODE_SUMMARY, settings_help

    if mode not in MODEL_MODES:
        doc = (COMMANDS[mode].__doc__ or "").strip().splitlines()
        summary = MODE_SUMMARY.get(mode) or (doc[0] if doc else "")
        usage = f"\nusage: {doc[0].replace('`', '').rstrip('.')}" if doc and doc[0] != summary else ""
        return f"yolokit {mode}: {summary}{usage}"
    task = next((word.partition("=")[2] for word in rest if word.startswith("task=")), None)
    return settings_help(mode, _mode_configs(mode, task), command_keys(mode))


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


def _load(model: str, task: str | None) -> Any:
    from yolokit.model import YOLO

    return YOLO(model, task=task)


def cmd_help(rest: list[str]) -> int:
    """``yolokit help`` (every mode in one line each) or ``yolokit help MODE`` (that mode's keys)."""
    from yolokit.cli_help import overview

    if rest and rest[0] in COMMANDS and rest[0] != "help":
        print(_mode_help(rest[0], rest[1:]))
        return 0
    if rest:
        raise ConfigError(_unknown_mode(rest[0]))
    missing = [name for name in UNSUPPORTED_MODES if name not in COMMANDS]
    missing += [f"the {task} task" for task in REFERENCE_TASKS if task not in task_names()]
    print(overview(COMMANDS, task_names(), missing))
    return 0


def cmd_settings(rest: list[str]) -> int:
    from yolokit.cli_help import settings_text

    if rest:
        raise ConfigError(f"yolokit settings takes no arguments, found {rest}: its values come from environment "
                          "variables, e.g. YOLOKIT_CACHE_DIR=/data/cache yolokit predict ...")
    print(settings_text())
    return 0


def cmd_checks(rest: list[str]) -> int:
    from yolokit.cli_help import checks_text

    if rest:
        raise ConfigError(f"yolokit checks takes no arguments, found {rest}")
    print(checks_text())
    return 0


def cmd_version(rest: list[str]) -> int:
    from yolokit import __version__

    print(__version__)
    return 0


def cmd_info(rest: list[str]) -> int:
    model, task, values = _model_settings(rest, "info")
    _load(model, task).info(**values)
    return 0


def cmd_predict(rest: list[str]) -> int:
    model, task, values = _model_settings(rest, "predict", extra=("source",))
    source = values.pop("source", "")
    if not source:
        raise ConfigError("predict needs source=PATH|DIR|GLOB|URL|VIDEO")
    values.setdefault("save", "True")  # the CLI saves annotated images, like the reference's CLI
    for _ in _load(model, task).predict(source, **{**values, "stream": "True"}):
        pass  # streaming keeps memory flat; results are logged and saved by the predictor
    return 0


def cmd_val(rest: list[str]) -> int:
    model, task, values = _model_settings(rest, "val")
    _load(model, task).val(**values)
    return 0


def cmd_train(rest: list[str]) -> int:
    model, task, values = _model_settings(_resume_model(rest), "train")
    from yolokit.train.launch import launch_local, processes_to_launch

    nproc = processes_to_launch(values)  # device=0,1 / nproc=N: the workers, started through torchrun
    if nproc:
        return launch_local(rest, nproc)
    _load(model, task).train(**values)
    return 0


def _resume_model(rest: list[str]) -> list[str]:
    """``yolokit train resume=RUN_DIR`` needs no ``model=``: the run's ``weights/last.safetensors`` is loaded."""
    values = parse_key_values(rest)
    resume = values.get("resume", "")
    if "model" in values or resume.strip().lower() in ("", "true", "false", "yes", "no", "1", "0", "on", "off"):
        return rest
    return [*rest, f"model={Path(resume) / 'weights' / 'last.safetensors'}"]


def cmd_benchmark(rest: list[str]) -> int:
    """``yolokit benchmark model=W data=D imgsz=S [out=DIR threads=N rounds=R calib_images=N calib_method=M]``."""
    from yolokit.config import convert_value
    from yolokit.deploy.benchmark import format_table

    values = parse_key_values(rest)
    known = {"model": str, "data": str, "imgsz": int, "out": str, "threads": int, "rounds": int,
             "calib_images": int, "calib_method": str, "int8_budget": float}
    for key in values:
        if key not in known:
            raise ConfigError(unknown_key_message(key, list(known), "benchmark"))
    if not values.get("model"):
        raise ConfigError("benchmark needs model=PATH (a .pt/.safetensors file or a spec such as yolo26n.yaml)")
    typed = {key: convert_value(key, value, known[key]) for key, value in values.items()}
    int8 = {key: typed.pop(key) for key in ("calib_images", "calib_method", "int8_budget") if key in typed}
    if "out" in typed:  # before the model is read or downloaded (the benchmark checks its default folder itself)
        from yolokit.utils.io import check_output_dir

        check_output_dir(typed["out"], "benchmark output folder", "choose a writable folder with out=...")
    rows = _load(typed.pop("model"), None).benchmark(int8=int8 or None, **typed)
    print(format_table(rows))
    return 0


def cmd_export(rest: list[str]) -> int:
    model, task, values = _model_settings(rest, "export", extra=("register", "registry"))
    path = _load(model, task).export(**values)
    from yolokit.utils.io import format_size

    print(f"Exported {model} -> {path} ({format_size(path.stat().st_size)})")
    return 0


def cmd_inspect(rest: list[str]) -> int:
    from yolokit.weights.inspect import format_inspect, inspect_weights

    parser = argparse.ArgumentParser(prog="yolokit inspect", description="Describe a weights file safely.")
    parser.add_argument("file")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    ns = _parse(parser, rest)
    report = inspect_weights(ns.file)
    print(json.dumps(report, indent=2, default=str) if ns.json else format_inspect(report))
    return 0


def cmd_convert(rest: list[str]) -> int:
    from yolokit.weights import convert_weights

    parser = argparse.ArgumentParser(prog="yolokit convert", description="Convert weights to .safetensors/.pt.")
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--half", action="store_true", help="store floating tensors as fp16")
    ns = _parse(parser, rest)
    out = convert_weights(ns.input, ns.output, half=ns.half)
    print(f"Converted {ns.input} -> {out}")
    return 0


def cmd_data(rest: list[str]) -> int:
    from yolokit.data.synth import make_synthetic_dataset

    parser = argparse.ArgumentParser(prog="yolokit data", description="Dataset tools.")
    sub = parser.add_subparsers(dest="action", required=True)
    synth = sub.add_parser("synth", help="generate the built-in synthetic dataset (YOLO boxes, or class folders)")
    synth.add_argument("out")
    synth.add_argument("--task", choices=("detect", "classify"), default="detect")
    synth.add_argument("--train", type=int, default=None, help="images (default 64; classify 200)")
    synth.add_argument("--val", type=int, default=None, help="images (default 16; classify 50)")
    synth.add_argument("--imgsz", type=int, default=None, help="side (default 320; classify 64)")
    synth.add_argument("--seed", type=int, default=0)
    ns = _parse(parser, rest)
    if ns.task == "classify":
        from yolokit.data.classify_synth import make_synthetic_classification

        path = make_synthetic_classification(ns.out, n_train=200 if ns.train is None else ns.train,
                                             n_val=50 if ns.val is None else ns.val, imgsz=ns.imgsz or 64,
                                             seed=ns.seed)
        print(f"Synthetic classification dataset written: {path}")
        return 0
    path = make_synthetic_dataset(ns.out, n_train=64 if ns.train is None else ns.train,
                                  n_val=16 if ns.val is None else ns.val, imgsz=ns.imgsz or 320, seed=ns.seed)
    print(f"Synthetic dataset written: {path}")
    return 0


def cmd_demo(rest: list[str]) -> int:
    from yolokit.demo import run_demo
    from yolokit.utils.settings import convert_value

    values = parse_key_values([word for word in rest if word != "--quick"])
    for key in values:
        if key not in ("out", "quick"):
            raise ConfigError(unknown_key_message(key, ["out", "quick"], "demo"))
    quick = "--quick" in rest or convert_value("quick", values.get("quick", False), bool)
    run_demo(Path(values.get("out", "demo_out")), quick=quick)
    return 0


def cmd_registry(rest: list[str]) -> int:
    from yolokit.registry.cli import run

    return run(rest)


def _parse(parser: argparse.ArgumentParser, rest: list[str]) -> Any:
    """argparse, but a usage error is a one-line ConfigError instead of a SystemExit."""
    parser.exit_on_error = False
    try:
        return parser.parse_args(rest)
    except argparse.ArgumentError as err:
        raise ConfigError(f"{parser.prog}: {err}") from None
    except SystemExit as err:  # argparse exits on --help and on missing required arguments
        if err.code == 0:
            raise
        raise ConfigError(f"{parser.prog}: bad arguments {rest}; see '{parser.prog} --help'") from None


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "help": cmd_help,
    "settings": cmd_settings,
    "checks": cmd_checks,
    "version": cmd_version,
    "info": cmd_info,
    "predict": cmd_predict,
    "val": cmd_val,
    "train": cmd_train,
    "export": cmd_export,
    "benchmark": cmd_benchmark,
    "inspect": cmd_inspect,
    "convert": cmd_convert,
    "data": cmd_data,
    "demo": cmd_demo,
    "registry": cmd_registry,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
