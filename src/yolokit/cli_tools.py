"""The ``yolokit`` commands that take no model: ``settings``, ``checks``, ``version`` and the file tools ``inspect``,
``convert``, ``data synth``, ``demo`` and ``registry`` (argparse for the positional ones; a usage error is one line).

Each ``cmd_*(rest: list[str]) -> int`` is an entry of ``yolokit.cli.COMMANDS``; its docstring's first line is the
mode's line in ``yolokit MODE --help`` when ``cli_help.MODE_SUMMARY`` has none.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from yolokit.config import parse_key_values, unknown_key_message
from yolokit.errors import ConfigError

__all__ = ["cmd_checks", "cmd_convert", "cmd_data", "cmd_demo", "cmd_inspect", "cmd_registry", "cmd_settings",
           "cmd_version"]


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
