"""The text of ``yolokit help``, ``yolokit MODE --help`` / ``yolokit help MODE``, generated so it cannot drift.

A mode's keys come from its settings dataclasses (``yolokit.config``, the task table's settings classes): the key,
its type (from the annotation), its default, and one line, which is the comment written on the field's line in the
class body (found with ``ast`` + ``tokenize`` in the class's source; a subclass's comment wins over its base's).
Keys without such a comment take the shared wording in :data:`SHARED_HELP`; ``tests/test_friction.py`` checks that
every key of every mode has a line. This module returns text; ``yolokit.cli`` prints it.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import textwrap
import tokenize
import typing
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["SHARED_HELP", "MODE_SUMMARY", "field_help", "key_rows", "settings_help", "overview", "settings_text",
           "checks_text"]

# One line for keys that several settings classes share and that carry no comment of their own.
SHARED_HELP = {
    "model": "weights file (.pt/.safetensors/.onnx), published name, URL, registry://NAME, or spec (yolo26n.yaml)",
    "source": "image, folder, glob, URL, video, or a .txt list of them",
    "task": "the task the model must have (detect, classify); also 'yolokit TASK MODE ...'",
    "project": "parent folder of the run directories",
    "name": "run directory name under project (numbered name2, name3, ... unless exist_ok)",
    "verbose": "print per-image / per-class lines and progress bars (False: warnings only)",
    "epochs": "number of training epochs",
    "seed": "random seed of the run (data order, augmentation, initialisation)",
    "warmup_epochs": "epochs of learning-rate and momentum warm-up (fractions allowed)",
    "warmup_momentum": "momentum at the start of warm-up",
    "warmup_bias_lr": "bias learning rate at the start of warm-up",
    "box": "box-loss gain",
    "cls": "classification-loss gain",
    "hsv_h": "hue augmentation (fraction)",
    "hsv_s": "saturation augmentation (fraction)",
    "hsv_v": "value (brightness) augmentation (fraction)",
    "degrees": "random rotation range (+- degrees)",
    "translate": "random translation (+- fraction of the image)",
    "scale": "random scale gain range (+- fraction)",
    "shear": "random shear range (+- degrees)",
    "perspective": "random perspective (fraction, 0 - 0.001)",
    "flipud": "probability of an up-down flip",
    "fliplr": "probability of a left-right flip",
    "mosaic": "probability of a 4-image mosaic",
    "mixup": "probability of mixing two images",
    "show_labels": "draw class names on saved images",
    "show_conf": "draw confidences on saved images",
}

# One line per command of ``yolokit`` (those without one fall back to the first line of their function's docstring).
MODE_SUMMARY = {
    "predict": "detect objects in images, folders, globs, URLs or videos",
    "val": "measure mAP (COCO-exact) on a dataset split",
    "train": "train or fine-tune on a dataset",
    "export": "write the model as ONNX (fp32, fp16, INT8), TorchScript, safetensors or pt",
    "benchmark": "every export format side by side: size, latency, mAP and its drop vs PyTorch",
    "info": "model summary: layers, parameters, GFLOPs, default imgsz",
    "inspect": "describe a weights file safely (format, safety verdict, classes, sha256): inspect FILE [--json]",
    "convert": "convert weights to .safetensors / .pt: convert IN OUT [--half]",
    "data": "dataset tools: data synth OUT --train N --val M --imgsz S --seed K",
    "demo": "a model's life on built-in data, offline: demo [out=DIR] [weights=FILE]",
    "registry": "versioned weights registry: registry COMMAND ... (registry --help)",
    "settings": "where yolokit keeps things: cache, registry, threads, environment variables",
    "checks": "versions of Python, torch, ONNX Runtime, ... and the machine's threads and paths",
    "version": "print yolokit's version",
    "help": "this text; 'yolokit help MODE' lists a mode's keys",
}


# --- field comments --------------------------------------------------------------------------------------------
@functools.cache
def _own_comments(cls: type) -> dict[str, str]:
    """Field name -> the comment on its line, for the fields ``cls``'s own body defines ({} without source)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    body = ast.parse(source).body[0]
    out = {}
    for node in getattr(body, "body", []):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            text = comments.get(node.end_lineno or node.lineno) or comments.get(node.lineno)
            if text:
                out[node.target.id] = text
    return out


def field_help(cls: type) -> dict[str, str]:
    """Field name -> one line for every field of the dataclass ``cls`` that has one (own comment, inherited
    comment, then :data:`SHARED_HELP`); groups are walked (their keys are flat)."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        out.update(_own_comments(klass))
    for f in dataclasses.fields(cls):
        if f.metadata.get("group"):
            out.update(field_help(typing.get_type_hints(cls)[f.name]))
        elif f.name not in out and f.name in SHARED_HELP:
            out[f.name] = SHARED_HELP[f.name]
    return out


# --- key tables ------------------------------------------------------------------------------------------------
def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "").replace("NoneType", "None")


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return '""' if f.default == "" else str(f.default)
    return "(group)" if f.metadata.get("group") else "-"


def key_rows(cls: type) -> list[tuple[str, str, str, str]]:
    """``(key, type, default, meaning)`` for every flat key of the settings class ``cls``, in field order."""
    hints, notes = typing.get_type_hints(cls), field_help(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("group"):
            rows.extend(key_rows(hints[f.name]))
        else:
            rows.append((f.name, _type_name(hints[f.name]), _default(f), notes.get(f.name, "")))
    return rows


def settings_help(mode: str, classes: Iterable[type], extra: Iterable[tuple[str, str, str, str]] = ()) -> str:
    """``yolokit MODE --help``: usage, then one row per key (``extra`` rows first: the command's own keys)."""
    rows = list(extra)
    seen = {row[0] for row in rows}
    for cls in classes:
        for row in key_rows(cls):
            if row[0] not in seen:
                rows.append(row)
                seen.add(row[0])
    widths = [max(len(r[i]) for r in [("key", "type", "default", ""), *rows]) for i in range(3)]
    widths = [min(w, cap) for w, cap in zip(widths, (16, 26, 12), strict=True)]
    lines = [f"usage: yolokit [TASK] {mode} key=value ...   ({MODE_SUMMARY.get(mode, mode)})", ""]
    lines.append(f"  {'key':<{widths[0]}}  {'type':<{widths[1]}}  {'default':<{widths[2]}}  meaning")
    for key, kind, default, meaning in rows:
        lines.append(f"  {key:<{widths[0]}}  {kind:<{widths[1]}}  {default:<{widths[2]}}  {meaning}".rstrip())
    lines += ["", "Values are key=value words (True/False, numbers, comma lists such as classes=0,2). A wrong key or",
              "value is a one-line error (exit status 2) before any model is loaded."]
    return "\n".join(lines)


def overview(commands: dict[str, Callable[..., Any]], tasks: Iterable[str], unsupported: Iterable[str]) -> str:
    """``yolokit help``: usage, each command with its one line, the tasks, what the reference has and yolokit not."""
    def summary(name: str) -> str:
        doc = (inspect.getdoc(commands[name]) or "").splitlines()
        return MODE_SUMMARY.get(name) or (doc[0] if doc else "")

    width = max(len(name) for name in commands)
    lines = ["usage: yolokit [TASK] MODE key=value ...", "", "Modes:"]
    lines += [f"  {name:<{width}}  {summary(name)}" for name in commands]
    lines += ["", f"TASK: {', '.join(tasks)} (the model must be of that task). Not in yolokit: "
                  f"{', '.join(unsupported)}.",
              "'yolokit MODE --help' (or 'yolokit help MODE') lists a mode's keys with type, default and meaning.",
              "Errors print one line on stderr and exit with status 2."]
    return "\n".join(lines)


# --- yolokit settings / yolokit checks -------------------------------------------------------------------------
def _paths() -> list[tuple[str, str, str]]:
    """``(what, value, environment variable)`` of every place yolokit reads or writes outside a run directory."""
    import os

    from yolokit.models.zoo import BASE_URL_ENV, RELEASE_BASE_URL
    from yolokit.registry.names import REGISTRY_ENV, default_registry_path
    from yolokit.utils.io import CACHE_ENV, cache_root

    root = cache_root()
    return [
        ("cache dir", str(root), CACHE_ENV),
        ("downloaded weights", str(root / "weights"), ""),
        ("exported ONNX graphs", str(root / "onnx"), ""),
        ("registry", str(default_registry_path()), REGISTRY_ENV),
        ("weights URL base", os.environ.get(BASE_URL_ENV) or RELEASE_BASE_URL, BASE_URL_ENV),
    ]


def _threads() -> str:
    import os

    from yolokit.utils.threads import physical_cores, resolve_threads

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    omp = os.environ.get("OMP_NUM_THREADS") or "unset"
    return (f"{resolve_threads()} per inference session (OMP_NUM_THREADS={omp}; {physical_cores()} physical cores, "
            f"{usable} of {os.cpu_count()} CPUs usable by this process)")


def settings_text() -> str:
    """``yolokit settings``: yolokit's settings, which all come from the environment (no settings file)."""
    import os

    from yolokit.models.zoo import BASE_URL_ENV
    from yolokit.registry.names import REGISTRY_ENV
    from yolokit.utils.io import CACHE_ENV

    rows = [*_paths(), ("threads", _threads(), "OMP_NUM_THREADS")]
    width = max(len(r[0]) for r in rows)
    lines = ["yolokit settings (read from the environment; yolokit writes no settings file):"]
    lines += [f"  {what:<{width}}  {value}" + (f"   (${env})" if env else "") for what, value, env in rows]
    env_vars = (CACHE_ENV, REGISTRY_ENV, BASE_URL_ENV, "OMP_NUM_THREADS")
    lines.append("  environment       " + ", ".join(f"{k}={os.environ[k]}" if k in os.environ else f"{k} unset"
                                                   for k in env_vars))
    lines.append("Change one by setting its variable, e.g. YOLOKIT_CACHE_DIR=/data/cache yolokit predict ...")
    return "\n".join(lines)


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def checks_text() -> str:
    """``yolokit checks``: versions, devices, threads, paths and ONNX Runtime providers (imports torch and ORT)."""
    import platform

    import torch

    from yolokit import __version__

    cuda = f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s)" if torch.cuda.is_available() else "no CUDA"
    mps = ", MPS" if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else ""
    try:
        import onnxruntime

        providers = ", ".join(onnxruntime.get_available_providers())
    except ImportError:
        providers = "onnxruntime not installed"
    lines = [
        f"yolokit      {__version__}",
        f"Python       {platform.python_version()} ({platform.python_implementation()}) on {platform.platform()}",
        f"torch        {torch.__version__} ({cuda}{mps}); intra-op threads {torch.get_num_threads()}",
    ]
    for label, package in (("numpy", "numpy"), ("opencv", "opencv-python-headless"), ("onnx", "onnx"),
                           ("onnxruntime", "onnxruntime"), ("safetensors", "safetensors"),
                           ("pycocotools", "pycocotools"), ("pandas", "pandas")):
        version = _version(package)
        if package.startswith("opencv") and version == "not installed":
            version = _version("opencv-python")
        lines.append(f"{label:<12} {version}")
    lines.append(f"ORT providers {providers}")
    lines.append(f"threads      {_threads()}")
    lines += [f"{what:<12} {value}" for what, value, _ in _paths() if what in ("cache dir", "registry")]
    try:
        with open("/proc/loadavg") as handle:
            lines.append(f"load average {' '.join(handle.read().split()[:3])} (1, 5, 15 min)")
    except OSError:
        pass
    return "\n".join(lines)
