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

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from yolokit.cli_keys import MODEL_MODES, command_keys, model_settings, resume_model
from yolokit.cli_keys import mode_configs as _mode_configs
from yolokit.cli_tools import (
    cmd_checks,
    cmd_convert,
    cmd_data,
    cmd_demo,
    cmd_inspect,
    cmd_registry,
    cmd_settings,
    cmd_version,
)
from yolokit.config import parse_key_values, unknown_key_message
from yolokit.errors import ConfigError, YolokitError
from yolokit.tasks import get_task, task_names

__all__ = ["COMMANDS", "MODEL_MODES", "command_keys", "main"]

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


def _unknown_mode(word: str) -> str:
    """``"unknown mode 'predcit': did you mean 'predict'?"`` (only a close match), else the list of modes."""
    from yolokit.config import close_matches

    close = close_matches(word, list(dict.fromkeys([*COMMANDS, *UNSUPPORTED_MODES])))
    if not close:
        return f"unknown mode '{word}': modes: {', '.join(COMMANDS)} ('yolokit help' says more)"
    lacking = f" ({UNSUPPORTED_MODES[close[0]]})" if close[0] not in COMMANDS else ""
    return f"unknown mode '{word}': did you mean '{close[0]}'?{lacking}"


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


def cmd_info(rest: list[str]) -> int:
    model, task, values = model_settings(rest, "info")
    _load(model, task).info(**values)
    return 0


def cmd_predict(rest: list[str]) -> int:
    model, task, values = model_settings(rest, "predict", extra=("source",))
    source = values.pop("source", "")
    if not source:
        raise ConfigError("predict needs source=PATH|DIR|GLOB|URL|VIDEO")
    values.setdefault("save", "True")  # the CLI saves annotated images, like the reference's CLI
    for _ in _load(model, task).predict(source, **{**values, "stream": "True"}):
        pass  # streaming keeps memory flat; results are logged and saved by the predictor
    return 0


def cmd_val(rest: list[str]) -> int:
    model, task, values = model_settings(rest, "val")
    _load(model, task).val(**values)
    return 0


def cmd_train(rest: list[str]) -> int:
    model, task, values = model_settings(resume_model(rest), "train")
    from yolokit.train.launch import launch_local, processes_to_launch

    nproc = processes_to_launch(values)  # device=0,1 / nproc=N: the workers, started through torchrun
    if nproc:
        return launch_local(rest, nproc)
    _load(model, task).train(**values)
    return 0


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
    model, task, values = model_settings(rest, "export", extra=("register", "registry"))
    path = _load(model, task).export(**values)
    from yolokit.utils.io import format_size

    print(f"Exported {model} -> {path} ({format_size(path.stat().st_size)})")
    return 0


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
