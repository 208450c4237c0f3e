"""``yolokit registry COMMAND ...``: the registry's command line (``yolokit.cli`` dispatches here).

    yolokit registry register NAME FILE [--parent NAME:N] [--relation R] [--tag k=v] [--note TEXT]
    yolokit registry alias NAME:N ALIAS          yolokit registry unalias NAME ALIAS
    yolokit registry list                        yolokit registry show NAME[:N|@ALIAS]
    yolokit registry history NAME                yolokit registry lineage NAME:N
    yolokit registry audit NAME                  yolokit registry diff A B
    yolokit registry pull REF DEST               yolokit registry delete NAME:N [--force]
    yolokit registry gc [--dry-run]

``REF`` is ``NAME:N``, ``NAME@ALIAS`` or ``NAME`` (the latest). ``--registry PATH`` (before or after the command)
chooses the registry directory (default ``$YOLOKIT_REGISTRY``, else ``~/.yolokit/registry``); ``--json`` prints
machine-readable output for list, show, history, lineage, audit and diff. Errors are one-line ``YolokitError``\\ s,
which ``yolokit.cli`` prints and turns into exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from yolokit.errors import ConfigError
from yolokit.registry.names import RELATIONS

__all__ = ["run"]

PROG = "yolokit registry"


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--registry", default=argparse.SUPPRESS, help="registry directory")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    parser = argparse.ArgumentParser(prog=PROG, description="Versioned weights registry.", exit_on_error=False)
    parser.add_argument("--registry", default=None, help="registry directory (default $YOLOKIT_REGISTRY)")
    parser.add_argument("--json", action="store_true", default=False, help="print JSON")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, *args: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, exit_on_error=False)
        for arg in args:
            p.add_argument(arg)
        return p

    reg = add("register", "register a weights file as NAME:N", "name", "file")
    reg.add_argument("--parent", help="the version it derives from (NAME:N, NAME@ALIAS, NAME)")
    reg.add_argument("--relation", choices=RELATIONS, help="how it derives from the parent (default: inferred)")
    reg.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="a free-form tag (repeatable)")
    reg.add_argument("--note", default="", help="a note on this version")
    add("alias", "point ALIAS of NAME at version N", "ref", "alias")
    add("unalias", "remove NAME@ALIAS", "name", "alias")
    add("list", "every model, its versions and aliases")
    add("show", "one version in full", "ref")
    add("history", "every version of NAME, one line each", "name")
    add("lineage", "ancestors and descendants of a version", "ref")
    add("audit", "the alias / registration log of NAME", "name")
    add("diff", "metadata, metrics, classes, architecture and weights from A to B", "a", "b")
    add("pull", "copy a version's verified file to DEST", "ref", "dest")
    add("delete", "delete a version", "ref").add_argument("--force", action="store_true",
                                                          help="also drop its aliases and detach its children")
    add("gc", "remove unreferenced blobs").add_argument("--dry-run", action="store_true")
    return parser


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = _parser()
    try:
        return parser.parse_args(list(argv))
    except argparse.ArgumentError as err:
        raise ConfigError(f"{PROG}: {err}; see '{PROG} --help'") from None
    except SystemExit as err:  # --help (code 0) or a missing argument
        if err.code == 0:
            raise
        raise ConfigError(f"{PROG}: bad arguments {list(argv)}; see '{PROG} --help'") from None


def _tags(words: list[str]) -> dict[str, str]:
    tags = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise ConfigError(f"--tag expects KEY=VALUE, got {word!r}: e.g. --tag dataset=coco")
        tags[key] = value
    return tags


def _as_json(obj: Any) -> str:
    def default(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return value.to_dict() if hasattr(value, "to_dict") else dataclasses.asdict(value)
        return str(value)

    return json.dumps(obj, indent=2, default=default)


def run(argv: Sequence[str]) -> int:
    """Run ``yolokit registry ARGS``; returns the exit status (errors raise ``YolokitError``)."""
    ns = _parse(argv)
    from yolokit.registry.registry import Registry

    registry = Registry(ns.registry)
    quiet = logging.getLogger("yolokit.registry")
    saved = quiet.level
    quiet.setLevel(logging.WARNING)  # this command prints its own result lines
    try:
        print(COMMANDS[ns.command](registry, ns))
    finally:
        quiet.setLevel(saved)
    return 0


def _register(reg: Any, ns: argparse.Namespace) -> str:
    v = reg.register(ns.name, ns.file, parent=ns.parent, relation=ns.relation, tags=_tags(ns.tag), note=ns.note)
    if ns.json:
        return _as_json(v)
    lineage = f", {v.relation} from {v.parent}" if v.parent else ""
    return f"Registered {v.ref} ({v.format} {v.precision}{lineage}) sha256 {v.sha256}"


def _alias(reg: Any, ns: argparse.Namespace) -> str:
    v = reg.alias(ns.ref, ns.alias)
    return f"{v.name}@{ns.alias} -> {v.ref}"


def _unalias(reg: Any, ns: argparse.Namespace) -> str:
    number = reg.unalias(ns.name, ns.alias)
    return f"Removed {ns.name}@{ns.alias} (was {ns.name}:{number})"


def _list(reg: Any, ns: argparse.Namespace) -> str:
    from yolokit.registry.report import format_list

    models = reg.list()
    return _as_json(models) if ns.json else format_list(models)


def _show(reg: Any, ns: argparse.Namespace) -> str:
    from yolokit.registry.report import format_version

    version = reg.resolve(ns.ref)
    children = reg.children(version.ref)
    if ns.json:
        return _as_json({**version.to_dict(), "children": [c.ref for c in children]})
    return format_version(version, children)


def _history(reg: Any, ns: argparse.Namespace) -> str:
    from yolokit.registry.report import format_history_line

    versions = reg.history(ns.name)
    if ns.json:
        return _as_json(versions)
    return "\n".join(format_history_line(v) for v in versions) or f"{ns.name} has no versions left"


def _lineage(reg: Any, ns: argparse.Namespace) -> str:
    from yolokit.registry.report import format_lineage

    lineage = reg.lineage(ns.ref)
    if ns.json:
        refs = {lineage.version.id: lineage.version.ref}
        refs.update({c.id: c.ref for kids in lineage.children.values() for c in kids})
        tree = {refs[node]: [c.ref for c in kids] for node, kids in lineage.children.items()}
        return _as_json({"ancestors": [v.ref for v in lineage.ancestors], "version": lineage.version.ref,
                         "children": tree})
    return format_lineage(lineage)


def _audit(reg: Any, ns: argparse.Namespace) -> str:
    from yolokit.registry.report import format_audit

    entries = reg.audit(ns.name)
    return _as_json(entries) if ns.json else format_audit(entries)


def _diff(reg: Any, ns: argparse.Namespace) -> str:
    from yolokit.registry.report import format_diff

    diff = reg.diff(ns.a, ns.b)
    return _as_json(diff) if ns.json else format_diff(diff)


def _pull(reg: Any, ns: argparse.Namespace) -> str:
    version = reg.resolve(ns.ref)  # pinned: an alias moved meanwhile does not change what is pulled
    path = reg.pull(version.ref, ns.dest)
    return f"Pulled {version.ref} -> {path} (sha256 verified)"


def _delete(reg: Any, ns: argparse.Namespace) -> str:
    v = reg.delete(ns.ref, force=ns.force)
    return f"Deleted {v.ref}; its file is removed by 'yolokit registry gc' once nothing else uses it"


def _gc(reg: Any, ns: argparse.Namespace) -> str:
    from yolokit.registry.report import format_gc

    return format_gc(reg.gc(dry_run=ns.dry_run))


COMMANDS: dict[str, Callable[[Any, argparse.Namespace], str]] = {
    "register": _register, "alias": _alias, "unalias": _unalias, "list": _list, "show": _show,
    "history": _history, "lineage": _lineage, "audit": _audit, "diff": _diff, "pull": _pull,
    "delete": _delete, "gc": _gc,
}
