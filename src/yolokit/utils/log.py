"""How yolokit's log lines reach the user: the same lines from the CLI and the Python API, never twice.

The library logs with ``logging.getLogger(__name__)`` (children of the ``yolokit`` logger) and never configures
logging at import. Two entry points decide where the lines go:

- the CLI (``yolokit.cli``) attaches :class:`StdoutHandler` to the ``yolokit`` logger for one command;
- each mode of the Python API (``YOLO.info/predict/val/export/train``) runs inside :func:`verbosity`:

  * ``verbose=True`` (the default): if nothing would receive yolokit's records (no handler on the ``yolokit``
    logger, on the root logger or between them: ``Logger.hasHandlers()``; a ``logging.NullHandler`` counts as a
    handler, so a user who installed one silences yolokit), a :class:`StdoutHandler` is attached for the call,
    so ``model.info()`` prints its summary as the CLI does. If logging *is* configured, yolokit's records go to
    those handlers only (no second copy). Either way, when the ``yolokit`` logger has no level of its own
    (``NOTSET``) it is set to ``INFO`` for the call, so the INFO lines pass a root logger left at ``WARNING``; a
    level the user set on it is respected.
  * ``verbose=False``: the ``yolokit`` logger is raised to ``WARNING`` for the call (warnings still show).

  Everything is restored when the call returns; for a generator (``predict(stream=True)``) when it finishes or is
  closed. Levels are per logger, so calls running at the same time in several threads share them.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["LOGGER_NAME", "StdoutHandler", "verbosity", "logged"]

LOGGER_NAME = "yolokit"
F = TypeVar("F", bound=Callable[..., Any])


class StdoutHandler(logging.StreamHandler):
    """Plain ``%(message)s`` lines to whatever ``sys.stdout`` is at the time of each record (so redirection and
    capture work), printed above a tqdm progress bar instead of through it."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property  # type: ignore[override]
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        if "tqdm" in sys.modules:  # a progress bar may be on screen
            from tqdm import tqdm

            try:
                tqdm.write(self.format(record), file=sys.stdout)
            except Exception:  # noqa: BLE001 - logging must never raise into the caller
                self.handleError(record)
        else:
            super().emit(record)


@contextmanager
def verbosity(verbose: bool = True) -> Iterator[None]:
    """Run the block with yolokit's INFO lines shown (``verbose``) or silenced; see the module docstring."""
    logger = logging.getLogger(LOGGER_NAME)
    saved_level = logger.level
    handler = None
    if not verbose:
        logger.setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
    else:
        if saved_level == logging.NOTSET:
            logger.setLevel(logging.INFO)
        if not logger.hasHandlers():
            handler = StdoutHandler()
            logger.addHandler(handler)
    try:
        yield
    finally:
        if handler is not None:
            logger.removeHandler(handler)
        logger.setLevel(saved_level)


def _stream(results: Iterator[Any], verbose: bool) -> Iterator[Any]:
    """``results`` consumed inside :func:`verbosity` (a generator logs while it is iterated)."""
    with verbosity(verbose):
        yield from results


def _as_bool(value: Any) -> bool:
    """A ``verbose`` value as given (bool, or a CLI string); anything unreadable counts as True (the settings
    check reports it)."""
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "no", "0", "off")
    return bool(value) if value is not None else True


def logged(method: F) -> F:
    """Decorate a mode of the Python API: the call (and a generator it returns) runs inside
    :func:`verbosity`, with ``verbose`` taken from the call's arguments (a parameter or a ``**overrides`` key)."""
    signature = inspect.signature(method)
    var_kw = next((p.name for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD), None)

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            bound = signature.bind_partial(*args, **kwargs).arguments
        except TypeError:  # wrong arguments: let the method raise its own error
            bound = {}
        extra = bound.get(var_kw, {}) if var_kw else {}
        verbose = _as_bool(bound.get("verbose", extra.get("verbose", True)))
        with verbosity(verbose):
            result = method(*args, **kwargs)
        if isinstance(result, types.GeneratorType):
            return _stream(result, verbose)
        return result

    return wrapper  # type: ignore[return-value]
