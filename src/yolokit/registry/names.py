"""Registry names, references and the registry's location (no I/O besides reading the environment).

    ref = parse_ref("yolo-demo:3")           # Ref(name="yolo-demo", number=3, alias=None)
    ref = parse_ref("yolo-demo@production")  # Ref(name="yolo-demo", number=None, alias="production")
    ref = parse_ref("registry://yolo-demo")  # the latest version of yolo-demo
    check_name("../etc")                     # RegistryError: names must not contain '/', '\\', '..', ...

A model name and an alias are 1-128 characters of printable text without path separators (``/``, ``\\``), ``..``,
the reference separators ``:`` and ``@``, control characters, or leading / trailing whitespace. ``latest`` is not an
alias one can set: ``NAME`` alone already means the latest version.
"""

from __future__ import annotations

import dataclasses
import os
import unicodedata
from pathlib import Path

from yolokit.errors import RegistryError

__all__ = ["Ref", "parse_ref", "check_name", "check_alias", "check_relation", "default_registry_path", "RELATIONS",
           "REGISTRY_ENV", "URI_SCHEME"]

REGISTRY_ENV = "YOLOKIT_REGISTRY"
URI_SCHEME = "registry://"
RELATIONS = ("finetuned", "quantized", "exported", "converted")
MAX_NAME = 128
_FORBIDDEN = ("/", "\\", ":", "@")
RESERVED_ALIASES = ("latest",)


@dataclasses.dataclass(frozen=True)
class Ref:
    """A reference to a version: ``NAME:N`` (``number``), ``NAME@ALIAS`` (``alias``) or ``NAME`` (the latest)."""

    name: str
    number: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.number is not None:
            return f"{self.name}:{self.number}"
        return f"{self.name}@{self.alias}" if self.alias else self.name


def default_registry_path(path: str | os.PathLike | None = None) -> Path:
    """The registry directory: ``path`` if given, else ``$YOLOKIT_REGISTRY``, else ``~/.yolokit/registry``."""
    if path is not None and str(path) != "":
        return Path(path).expanduser()
    env = os.environ.get(REGISTRY_ENV)
    return Path(env).expanduser() if env else Path.home() / ".yolokit" / "registry"


def _problem(text: str) -> str | None:
    """Why ``text`` cannot be a model name or an alias, or None when it can."""
    if not isinstance(text, str):
        return f"expected a string, found {type(text).__name__}"
    if not text.strip():
        return "it is empty or whitespace only"
    if text != text.strip():
        return "it has leading or trailing whitespace"
    if len(text) > MAX_NAME:
        return f"it has {len(text)} characters (at most {MAX_NAME})"
    bad = [c for c in text if unicodedata.category(c).startswith("C")]
    if bad:
        return f"it contains the control character {bad[0]!r}"
    for sep in _FORBIDDEN:
        if sep in text:
            return f"it contains {sep!r} (path separators and the reference separators ':' '@' are not allowed)"
    if ".." in text:
        return "it contains '..'"
    if text in (".",):
        return "'.' is a path"
    return None


def check_name(name: str) -> str:
    """``name`` if it is a valid model name, else a one-line ``RegistryError`` saying why."""
    problem = _problem(name)
    if problem:
        raise RegistryError(f"invalid model name {name!r}: {problem}; use letters, digits, '-', '_' or '.' "
                            "(e.g. 'yolo26n-coco')")
    return name


def check_alias(alias: str) -> str:
    """``alias`` if it is a valid alias (as a name, and not ``latest`` or a number), else a ``RegistryError``."""
    problem = _problem(alias)
    if problem is None and alias in RESERVED_ALIASES:
        problem = f"'{alias}' is reserved (NAME alone means the latest version)"
    if problem is None and alias.isdigit():
        problem = "an alias cannot be a number (NAME:N already names version N)"
    if problem:
        raise RegistryError(f"invalid alias {alias!r}: {problem}; use e.g. 'production' or 'staging'")
    return alias


def check_relation(relation: str | None) -> str | None:
    """``relation`` if it is None or one of ``RELATIONS``, else a ``RegistryError``."""
    if relation is not None and relation not in RELATIONS:
        raise RegistryError(f"unknown relation {relation!r}: expected one of {', '.join(RELATIONS)}")
    return relation


def parse_ref(ref: str | Ref) -> Ref:
    """``NAME:N`` / ``NAME@ALIAS`` / ``NAME`` (optionally prefixed ``registry://``) -> ``Ref``; checks each part."""
    if isinstance(ref, Ref):
        return ref
    if not isinstance(ref, str):
        raise RegistryError(f"a version reference must be a string like 'NAME:3', found {type(ref).__name__}")
    text = ref[len(URI_SCHEME):] if ref.startswith(URI_SCHEME) else ref
    if "@" in text:
        name, _, alias = text.partition("@")
        return Ref(check_name(name), alias=_checked_ref_alias(alias, ref))
    if ":" in text:
        name, _, number = text.rpartition(":")
        if not number.isdigit() or int(number) < 1:
            raise RegistryError(f"bad version reference {ref!r}: after ':' comes a version number >= 1 "
                                "(e.g. 'yolo-demo:3')")
        return Ref(check_name(name), number=int(number))
    return Ref(check_name(text))


def _checked_ref_alias(alias: str, ref: str) -> str:
    if alias in RESERVED_ALIASES:
        return alias
    try:
        return check_alias(alias)
    except RegistryError as err:
        raise RegistryError(f"bad version reference {ref!r}: {err}") from None
