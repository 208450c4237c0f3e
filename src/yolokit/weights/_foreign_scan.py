"""The opcode scan of a pickle: which globals it names, found without running anything (private helper of
``weights.foreign``, ``weights.formats`` and the TorchScript archive reader; re-exported by ``_foreign_pickle``).

``pickletools.genops`` walks the opcodes; only ``STACK_GLOBAL`` needs a (symbolic, strings-only) stack.
"""

from __future__ import annotations

import dataclasses
import functools
import pickletools
from pathlib import Path
from typing import Any

from yolokit.errors import WeightsError
from yolokit.weights._foreign_archive import _REDO
from yolokit.weights._foreign_globals import GlobalRef, is_allowed

__all__ = ["PickleScan", "scan_pickle", "scan_pickle_globals"]


_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}
_MARK = object()


@dataclasses.dataclass(frozen=True)
class PickleScan:
    """What one opcode walk of a pickle found: its globals (first use order, deduplicated) and whether a given
    string constant (e.g. yolokit's ``yolokit_format`` marker key) occurs in it."""

    globals: list[GlobalRef]
    has_marker: bool


def scan_pickle_globals(data: bytes, path: str | Path) -> list[GlobalRef]:
    """Globals referenced by pickle ``data`` (see ``foreign.scan_globals``); nothing is executed."""
    return scan_pickle(data, path).globals


def scan_pickle(data: bytes, path: str | Path, marker: str | None = None) -> PickleScan:
    """One walk over the opcodes of ``data`` (``pickletools.genops``): the globals and whether ``marker`` occurs.

    ``GLOBAL``/``INST``/``EXT*`` name their global in the opcode. Only ``STACK_GLOBAL`` (protocol 4+) takes its
    operands from the stack: at the first one the walk starts over with a symbolic stack (``_replay``), so a
    protocol-2 pickle (what ``torch.save`` writes) is walked once and a protocol-4 one twice.
    """
    try:
        scan = _walk(data, marker)
        return scan if scan is not None else _replay(data, marker)
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise WeightsError(f"{path}: malformed checkpoint pickle ({exc}); {_REDO}") from exc


def _walk(data: bytes, marker: str | None) -> PickleScan | None:
    """The fast walk (no stack); None at the first ``STACK_GLOBAL``."""
    found: dict[tuple[str, str], GlobalRef] = {}
    has_marker = False
    kind = _op_kinds().get
    for op, arg, _pos in pickletools.genops(data):
        what = kind(op.code)
        if what is None:
            continue
        if what == "global":
            _note(found, *str(arg).split(" ", 1))
        elif what == "ext":
            _note(found, "copyreg extension code", str(arg))
        elif what == "stack_global":
            return None
        elif marker is not None and arg == marker:
            has_marker = True
    return PickleScan(list(found.values()), has_marker)


@functools.lru_cache(maxsize=1)
def _op_kinds() -> dict[str, str]:
    """Opcode byte -> ``"global"`` / ``"ext"`` / ``"stack_global"`` / ``"string"`` for the opcodes the scan reads."""
    kinds = {}
    for op in pickletools.opcodes:
        if op.name in ("GLOBAL", "INST"):
            kinds[op.code] = "global"
        elif op.name.startswith("EXT"):
            kinds[op.code] = "ext"
        elif op.name == "STACK_GLOBAL":
            kinds[op.code] = "stack_global"
        elif op.name in _STRING_OPS:
            kinds[op.code] = "string"
    return kinds


def _note(found: dict[tuple[str, str], GlobalRef], module: Any, name: Any) -> None:
    module, name = (module, name) if isinstance(module, str) and isinstance(name, str) else ("?", "<dynamic>")
    found.setdefault((module, name), GlobalRef(module, name, is_allowed(module, name) and module != "?"))


def _replay(data: bytes, marker: str | None) -> PickleScan:
    """Every global in first-use order, resolving ``STACK_GLOBAL`` operands with a symbolic stack."""
    stack: list[Any] = []
    memo: dict[Any, Any] = {}
    found: dict[tuple[str, str], GlobalRef] = {}
    has_marker = False
    for op, arg, _pos in pickletools.genops(data):
        if op.name in ("GLOBAL", "INST"):
            _note(found, *str(arg).split(" ", 1))
        elif op.name == "STACK_GLOBAL":
            name, module = stack.pop(), stack.pop()
            _note(found, module, name)
        elif op.name.startswith("EXT"):
            _note(found, "copyreg extension code", str(arg))
        elif marker is not None and op.name in _STRING_OPS and arg == marker:
            has_marker = True
        _simulate(op, arg, stack, memo)
    return PickleScan(list(found.values()), has_marker)


def _simulate(op: pickletools.OpcodeInfo, arg: Any, stack: list[Any], memo: dict[Any, Any]) -> None:
    """Apply one opcode's stack effect, keeping only string values (enough to resolve STACK_GLOBAL operands)."""
    if op.name in _STRING_OPS:
        stack.append(arg if isinstance(arg, str) else None)
    elif op.name == "MARK":
        stack.append(_MARK)
    elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
        memo[arg] = stack[-1]
    elif op.name == "MEMOIZE":
        memo[len(memo)] = stack[-1]
    elif op.name in ("GET", "BINGET", "LONG_BINGET"):
        stack.append(memo.get(arg))
    elif op.name == "DUP":
        stack.append(stack[-1])
    elif op.name == "STACK_GLOBAL":
        stack.append(None)
    else:
        before = op.stack_before
        if pickletools.markobject in before:
            while stack.pop() is not _MARK:
                pass
            del stack[len(stack) - before.index(pickletools.markobject) :]
        elif before:
            if len(stack) < len(before):
                raise IndexError(f"stack underflow at {op.name}")
            del stack[len(stack) - len(before) :]
        stack.extend(None for _ in op.stack_after)
