"""Restricted unpickling of torch archives (private helper of ``weights.foreign``).

The pickle runs on the pure-Python ``pickle._Unpickler`` with our own REDUCE / NEWOBJ / NEWOBJ_EX / BUILD / INST / OBJ /
EXT handlers (and APPEND(S) / SETITEM(S) / ADDITEMS that only fill real lists, dicts and sets): the only callables that
can ever run are the stand-ins of ``_foreign_globals`` (inert records, tensor views with bounds checks, a few container
constructors); any other global raises ``UnsafeWeightsError``. ``scan_pickle`` (``_foreign_scan``, re-exported here)
lists the globals without running anything; ``to_plain`` turns unpickled metadata into JSON types.
"""

from __future__ import annotations

import io
import pickle
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from yolokit.errors import UnsafeWeightsError, WeightsError
from yolokit.weights._foreign_archive import _REDO, TorchArchive, _Malformed, _Storage, available_memory
from yolokit.weights._foreign_globals import (
    _BUILDABLE,
    AttrRef,
    GlobalRef,
    ModuleRecord,
    NamespaceRecord,
    _allow_table,
    _Global,
    _NdArray,
    _StorageType,
    is_allowed,
    normalize_global,
)
from yolokit.weights._foreign_scan import PickleScan, scan_pickle, scan_pickle_globals

__all__ = [
    "AttrRef", "GlobalRef", "ModuleRecord", "NamespaceRecord", "TorchArchive", "available_memory", "is_allowed",
    "PickleScan", "load_archive_pickle", "normalize_global", "scan_pickle", "scan_pickle_globals", "to_plain",
]  # fmt: skip
MAX_PLAIN_NODES = 200_000  # budget when converting metadata to plain JSON types (memo-DAG expansion guard)
MAX_NESTING = 100  # containers nested deeper than this are refused while unpickling (before anything hashes them)
MAX_PLAIN_ELEMENTS = 4096  # arrays / tensors / bytes larger than this become a one-line placeholder in metadata
_CONTAINERS = (tuple, list, dict, set, frozenset)


# --- the restricted unpickler --------------------------------------------------------------------------------------
def _text(value: Any) -> Any:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value


def _invoke(target: Any, args: Any, kwargs: Any = None) -> Any:
    if not isinstance(target, _Global):
        raise _Malformed(f"the pickle calls a {type(target).__name__}, which is not an allow-listed global")
    return target.invoke(tuple(args) if isinstance(args, list) else args, kwargs)


class _Unpickler(pickle._Unpickler):  # the pure-Python unpickler: every opcode handler below is ours
    """Runs data.pkl with an allow-list ``find_class`` and object-creating opcodes that call only stand-ins."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, archive: TorchArchive, only: Callable[[str, str], bool] | None = None) -> None:
        super().__init__(io.BytesIO(archive.read_pickle()), encoding="utf-8")
        self.archive, self.storages, self.only = archive, {}, only
        # id -> (container, nesting depth): the container is kept so its id cannot be reused while unpickling
        self._depths: dict[int, tuple[Any, int]] = {}
        self._copy_budget = 2 * len(archive.read_pickle()) + 2**20

    # -- nesting depth: every container the pickle builds gets its depth when built or filled, so a tuple nested a
    # million levels deep (which would crash the interpreter when hashed as a dict key or set member) is refused at
    # level MAX_NESTING + 1, before any hash, repr or comparison touches it.
    def _depth(self, obj: Any) -> int:
        if not isinstance(obj, _CONTAINERS):
            return 0  # scalars, tensors, inert records (records hash by identity and are walked with own bounds)
        entry = self._depths.get(id(obj))
        return entry[1] if entry is not None and entry[0] is obj else 1

    def _deepen(self, container: Any, items: Any) -> Any:
        """Record ``container``'s depth after ``items`` were put in it; refuse beyond ``MAX_NESTING``."""
        depth = max(self._depth(container), 1 + max((self._depth(item) for item in items), default=0))
        if depth > MAX_NESTING:
            raise _Malformed(f"containers nested more than {MAX_NESTING} levels deep (a pickle bomb)")
        self._depths[id(container)] = (container, depth)
        return container

    def find_class(self, module: str, name: str) -> Any:
        obj = _allow_table().get(normalize_global(module, name))
        if self.only is not None and not self.only(str(module), str(name)):
            obj = None
        if obj is None:
            described = GlobalRef(str(module), str(name), False).describe()
            raise UnsafeWeightsError(f"{self.archive.path}: refused global {described}: it is outside yolokit's "
                                     "allow-list of checkpoint globals; nothing was executed")  # fmt: skip
        return obj

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and _text(pid[0]) == "storage"):
            raise _Malformed(f"unknown persistent id {str(pid)[:80]}")
        _, storage_type, key, _location, numel = pid
        key = _text(key)
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str):
            raise _Malformed(f"persistent id with storage type {storage_type!r} and key {key!r}")
        if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
            raise _Malformed(f"storage '{key}' declares {numel!r} elements")
        if key not in self.storages:
            self.storages[key] = self.archive.storage(key, storage_type.dtype, numel)
        return self.storages[key]

    # -- copy budget: stand-ins that copy their arguments (set, OrderedDict, bytes, records' state dicts) are charged
    # the arguments' sizes, so memo references to one big object cannot make them copy it a thousand times.
    def _charge(self, *values: Any) -> None:
        self._copy_budget -= sum(_size(v) for v in values)
        if self._copy_budget < 0:
            raise _Malformed("the pickle copies more data than it holds (a pickle bomb)")

    def _call(self, target: Any, args: Any, kwargs: Any = None) -> Any:
        self._charge(*(args if isinstance(args, (tuple, list)) else (args,)), *(kwargs or {}).values())
        result = _invoke(target, args, kwargs)
        return self._deepen(result, _items(result)) if isinstance(result, _CONTAINERS) else result

    def _instantiate(self, klass: Any, args: list) -> None:  # INST / OBJ
        self.append(self._call(klass, args))

    def load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)

    def load_newobj(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)

    def load_newobj_ex(self) -> None:
        kwargs, args = self.stack.pop(), self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args, kwargs)

    def load_tuple(self) -> None:  # TUPLE / LIST / DICT / FROZENSET: items checked before the container is built
        items = self.pop_mark()
        self.append(self._deepen(tuple(items), items))

    def load_tuple1(self) -> None:
        self.stack[-1] = self._deepen((self.stack[-1],), self.stack[-1:])

    def load_tuple2(self) -> None:
        self.stack[-2:] = [self._deepen(tuple(self.stack[-2:]), self.stack[-2:])]

    def load_tuple3(self) -> None:
        self.stack[-3:] = [self._deepen(tuple(self.stack[-3:]), self.stack[-3:])]

    def load_list(self) -> None:
        items = self.pop_mark()
        self.append(self._deepen(items, items))

    def load_dict(self) -> None:
        items = self.pop_mark()  # keys are tuples/frozensets already depth-checked when they were built
        self.append(self._deepen({items[i]: items[i + 1] for i in range(0, len(items), 2)}, items))

    def load_frozenset(self) -> None:
        items = self.pop_mark()
        self.append(self._deepen(frozenset(items), items))

    def load_build(self) -> None:
        state, inst = self.stack.pop(), self.stack[-1]
        self._charge(state, *(state.values() if isinstance(state, dict) else state if isinstance(state, tuple) else ()))
        if isinstance(inst, _BUILDABLE):
            inst.__setstate__(state)
        elif not isinstance(inst, dict):  # a dict's state (e.g. an OrderedDict's _metadata) is dropped
            raise _Malformed(f"the pickle sets the state of a {type(inst).__name__}, which yolokit does not allow")

    def _target(self, kind: type) -> Any:
        target = self.stack[-1]
        if not isinstance(target, kind):
            raise _Malformed(f"the pickle adds items to a {type(target).__name__}, expected a {kind.__name__}")
        return target

    def load_append(self) -> None:  # APPEND / APPENDS / SETITEM(S) / ADDITEMS only touch real containers
        value = self.stack.pop()
        self._deepen(self._target(list), (value,)).append(value)

    def load_appends(self) -> None:
        items = self.pop_mark()
        self._deepen(self._target(list), items).extend(items)

    def load_setitem(self) -> None:
        value, key = self.stack.pop(), self.stack.pop()
        self._deepen(self._target(dict), (key, value))[key] = value

    def load_setitems(self) -> None:
        items = self.pop_mark()
        target = self._deepen(self._target(dict), items)
        for i in range(0, len(items) - 1, 2):
            target[items[i]] = items[i + 1]

    def load_additems(self) -> None:
        items = self.pop_mark()
        self._deepen(self._target(set), items).update(items)

    def load_ext(self) -> None:
        raise UnsafeWeightsError(f"{self.archive.path}: refused a copyreg extension-code global; nothing was executed")

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.APPEND[0]] = load_append
    dispatch[pickle.APPENDS[0]] = load_appends
    dispatch[pickle.SETITEM[0]] = load_setitem
    dispatch[pickle.SETITEMS[0]] = load_setitems
    dispatch[pickle.ADDITEMS[0]] = load_additems
    dispatch[pickle.TUPLE[0]] = load_tuple
    dispatch[pickle.TUPLE1[0]] = load_tuple1
    dispatch[pickle.TUPLE2[0]] = load_tuple2
    dispatch[pickle.TUPLE3[0]] = load_tuple3
    dispatch[pickle.LIST[0]] = load_list
    dispatch[pickle.DICT[0]] = load_dict
    dispatch[pickle.FROZENSET[0]] = load_frozenset
    for _op in (pickle.EXT1, pickle.EXT2, pickle.EXT4):
        dispatch[_op[0]] = load_ext


def _size(value: Any) -> int:
    """What copying ``value`` costs, in units of one reference or byte (containers, strings and bytes: length)."""
    return len(value) if isinstance(value, (*_CONTAINERS, str, bytes, bytearray)) else 1


def _items(container: Any) -> Any:
    """The members of a container whose depths bound its own (a dict's keys and values)."""
    if isinstance(container, dict):
        return [*container.keys(), *container.values()]
    return container


def load_archive_pickle(archive: TorchArchive, only: Callable[[str, str], bool] | None = None) -> Any:
    """Unpickle ``data.pkl`` with the restricted unpickler; structural problems become a ``WeightsError``.

    ``only(module, name)``: a narrower allow-list (e.g. the globals a native ``.pt`` may hold); others are refused.
    """
    try:
        return _Unpickler(archive, only).load()
    except WeightsError:
        raise
    except (_Malformed, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, RecursionError, MemoryError, RuntimeError, struct.error, UnicodeDecodeError,
            OverflowError) as exc:  # fmt: skip
        raise WeightsError(f"{archive.path}: malformed checkpoint pickle ({type(exc).__name__}: {str(exc)[:200]}); "
                           f"{_REDO}") from exc  # fmt: skip


# --- plain (JSON-able) values --------------------------------------------------------------------------------------
def to_plain(obj: Any, _state: list[int] | None = None, _depth: int = 0) -> Any:
    """Unpickled values -> plain JSON types: records become dicts/strings, tensors and arrays lists, paths strings."""
    state = [MAX_PLAIN_NODES] if _state is None else _state
    state[0] -= 1
    if state[0] < 0 or _depth > MAX_NESTING:
        raise WeightsError("checkpoint metadata is too large or too deeply nested to convert (possible pickle bomb)")
    if isinstance(obj, int) and not isinstance(obj, bool) and obj.bit_length() > 64:
        return f"<int of {obj.bit_length()} bits>"  # no JSON reader or printer of the metadata chokes on it
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, dict):
        return {k if isinstance(k, (str, int)) else str(k): to_plain(v, state, _depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_plain(v, state, _depth + 1) for v in obj]
    if isinstance(obj, NamespaceRecord):
        return to_plain(obj.values, state, _depth + 1)
    if isinstance(obj, _NdArray):
        value = obj.value
        if isinstance(value, np.ndarray) and value.size > MAX_PLAIN_ELEMENTS:
            return f"<array {list(value.shape)} {value.dtype}>"  # checked before tolist() allocates
        return to_plain(value.tolist() if isinstance(value, np.ndarray) else value, state, _depth + 1)
    if isinstance(obj, torch.Tensor):
        return obj.tolist() if obj.numel() <= MAX_PLAIN_ELEMENTS else f"<tensor {list(obj.shape)} {obj.dtype}>"
    if isinstance(obj, (bytes, bytearray)):
        return obj.hex() if len(obj) <= MAX_PLAIN_ELEMENTS else f"<{len(obj)} bytes>"
    if isinstance(obj, complex):
        return [obj.real, obj.imag]
    if isinstance(obj, ModuleRecord):
        return f"<{obj.module}.{obj.type_name}>"
    if isinstance(obj, _Global):
        return f"<{obj.qualname}>"
    if isinstance(obj, AttrRef):
        return f"<getattr {to_plain(obj.target, state, _depth + 1)}.{obj.name}>"
    return str(obj)  # slices, torch dtypes, numpy dtypes
