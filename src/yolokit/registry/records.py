"""Registry records (``Version``, ``ModelSummary``, ``AuditEntry``, ``GcReport``) and the queries that read them.

Every function here takes an open ``sqlite3.Connection`` and only reads; ``registry.py`` owns the writes.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from typing import Any

from yolokit.errors import RegistryError
from yolokit.registry.names import Ref

__all__ = ["Version", "ModelSummary", "AuditEntry", "GcReport", "Lineage", "find_version", "version_by_id",
           "versions_of", "versions_by_sha256", "children_of", "aliases_of_version", "model_summaries",
           "audit_entries", "model_id", "lineage_of"]


@dataclasses.dataclass
class Version:
    """One immutable registered version ``name:number`` and what was recorded about its file.

    ``names`` has int keys; ``metrics`` / ``train_args`` / ``metadata`` are plain JSON dicts; ``parent`` is the
    parent's ``NAME:N`` (kept even when the parent was deleted, then ``parent_deleted`` is True); ``aliases`` and
    ``tags`` are the version's current ones.
    """

    name: str
    number: int
    sha256: str
    format: str
    precision: str
    task: str | None
    architecture: str | None
    scale: str | None
    names: dict[int, str]
    parameters: int | None
    file_size: int
    metrics: dict[str, Any]
    dataset_fingerprint: str | None
    train_args: dict[str, Any]
    metadata: dict[str, Any]
    parent: str | None
    relation: str | None
    note: str
    created: str
    user: str | None
    host: str | None
    source: str | None
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    aliases: list[str] = dataclasses.field(default_factory=list)
    parent_deleted: bool = False
    id: int = 0

    @property
    def ref(self) -> str:
        """``NAME:N``."""
        return f"{self.name}:{self.number}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (``names`` keys as strings)."""
        out = dataclasses.asdict(self)
        out["names"] = {str(k): v for k, v in self.names.items()}
        out["ref"] = self.ref
        return out


@dataclasses.dataclass
class ModelSummary:
    """A model name with its version count, latest number and aliases (``{"production": 3}``)."""

    name: str
    versions: int
    latest: int | None
    aliases: dict[str, int]
    created: str


@dataclasses.dataclass
class AuditEntry:
    """One line of a model's append-only audit log."""

    at: str
    action: str  # register | alias | unalias | delete | tag | note
    alias: str | None
    from_number: int | None
    to_number: int | None
    user: str | None
    host: str | None
    detail: str


@dataclasses.dataclass
class GcReport:
    """What ``gc`` removed (or would remove with ``dry_run``)."""

    removed: list[str]
    freed_bytes: int
    temp_files: int
    kept: int
    dry_run: bool


@dataclasses.dataclass
class Lineage:
    """A version's ancestors (root first), the version, and its descendants (``children[id]`` -> versions)."""

    ancestors: list[Version]
    version: Version
    children: dict[int, list[Version]]


_SELECT = """SELECT v.*, m.name AS model_name, p.number AS parent_number, pm.name AS parent_model
FROM versions v JOIN models m ON m.id = v.model_id
LEFT JOIN versions p ON p.id = v.parent_id LEFT JOIN models pm ON pm.id = p.model_id"""


def _version(conn: sqlite3.Connection, row: sqlite3.Row) -> Version:
    parent = f"{row['parent_model']}:{row['parent_number']}" if row["parent_id"] is not None else row["parent_ref"]
    tags = {r["key"]: r["value"] for r in conn.execute("SELECT key, value FROM tags WHERE version_id = ? ORDER BY key",
                                                         (row["id"],))}
    return Version(
        name=row["model_name"], number=row["number"], sha256=row["sha256"], format=row["format"],
        precision=row["precision"], task=row["task"], architecture=row["architecture"], scale=row["scale"],
        names={int(k): v for k, v in json.loads(row["names"]).items()}, parameters=row["parameters"],
        file_size=row["file_size"], metrics=json.loads(row["metrics"]), dataset_fingerprint=row["dataset_fingerprint"],
        train_args=json.loads(row["train_args"]), metadata=json.loads(row["metadata"]), parent=parent,
        relation=row["relation"], note=row["note"], created=row["created"], user=row["user"], host=row["host"],
        source=row["source"], tags=tags, aliases=aliases_of_version(conn, row["id"]),
        parent_deleted=row["parent_id"] is None and row["parent_ref"] is not None, id=row["id"],
    )


def model_id(conn: sqlite3.Connection, name: str) -> int | None:
    row = conn.execute("SELECT id FROM models WHERE name = ?", (name,)).fetchone()
    return None if row is None else int(row[0])


def _missing(conn: sqlite3.Connection, ref: Ref, where: str) -> RegistryError:
    mid = model_id(conn, ref.name)
    if mid is None:
        known = [r[0] for r in conn.execute("SELECT name FROM models ORDER BY name LIMIT 10")]
        hint = f"known models: {', '.join(known)}" if known else "the registry is empty"
        return RegistryError(f"no model named {ref.name!r} in the registry {where} ({hint})")
    numbers = [r[0] for r in conn.execute("SELECT number FROM versions WHERE model_id = ? ORDER BY number", (mid,))]
    if ref.alias:
        aliases = [r[0] for r in conn.execute("SELECT alias FROM aliases WHERE model_id = ? ORDER BY alias", (mid,))]
        return RegistryError(f"{ref.name} has no alias {ref.alias!r} (aliases: {', '.join(aliases) or 'none'}); "
                             f"set it with 'yolokit registry alias {ref.name}:N {ref.alias}'")
    shown = ", ".join(str(n) for n in numbers) or "none"
    return RegistryError(f"{ref} does not exist ({ref.name} has versions {shown})")


def find_version(conn: sqlite3.Connection, ref: Ref, where: str = "") -> Version:
    """The version ``ref`` names (``NAME:N``, ``NAME@ALIAS``, ``NAME`` = latest); ``RegistryError`` if none."""
    if ref.number is not None:
        row = conn.execute(f"{_SELECT} WHERE m.name = ? AND v.number = ?", (ref.name, ref.number)).fetchone()
    elif ref.alias and ref.alias != "latest":
        row = conn.execute(f"{_SELECT} JOIN aliases a ON a.version_id = v.id AND a.model_id = m.id "
                           "WHERE m.name = ? AND a.alias = ?", (ref.name, ref.alias)).fetchone()
    else:
        row = conn.execute(f"{_SELECT} WHERE m.name = ? ORDER BY v.number DESC LIMIT 1", (ref.name,)).fetchone()
    if row is None:
        raise _missing(conn, ref, where)
    return _version(conn, row)


def version_by_id(conn: sqlite3.Connection, version_id: int) -> Version:
    return _version(conn, conn.execute(f"{_SELECT} WHERE v.id = ?", (version_id,)).fetchone())


def versions_by_sha256(conn: sqlite3.Connection, digest: str) -> list[Version]:
    """Every version whose file has this sha256, oldest first."""
    rows = conn.execute(f"{_SELECT} WHERE v.sha256 = ? ORDER BY v.id", (digest,)).fetchall()
    return [_version(conn, row) for row in rows]


def versions_of(conn: sqlite3.Connection, name: str) -> list[Version]:
    rows = conn.execute(f"{_SELECT} WHERE m.name = ? ORDER BY v.number", (name,)).fetchall()
    return [_version(conn, row) for row in rows]


def children_of(conn: sqlite3.Connection, version_id: int) -> list[Version]:
    rows = conn.execute(f"{_SELECT} WHERE v.parent_id = ? ORDER BY v.id", (version_id,)).fetchall()
    return [_version(conn, row) for row in rows]


def aliases_of_version(conn: sqlite3.Connection, version_id: int) -> list[str]:
    return [r[0] for r in conn.execute("SELECT alias FROM aliases WHERE version_id = ? ORDER BY alias", (version_id,))]


def model_summaries(conn: sqlite3.Connection) -> list[ModelSummary]:
    out = []
    for row in conn.execute("SELECT m.id, m.name, m.created, count(v.id) AS n, max(v.number) AS latest FROM models m "
                            "LEFT JOIN versions v ON v.model_id = m.id GROUP BY m.id ORDER BY m.name").fetchall():
        aliases = {r[0]: r[1] for r in conn.execute(
            "SELECT a.alias, v.number FROM aliases a JOIN versions v ON v.id = a.version_id WHERE a.model_id = ? "
            "ORDER BY a.alias", (row["id"],))}
        out.append(ModelSummary(row["name"], row["n"], row["latest"], aliases, row["created"]))
    return out


def audit_entries(conn: sqlite3.Connection, name: str) -> list[AuditEntry]:
    rows = conn.execute("SELECT * FROM audit WHERE model = ? ORDER BY id", (name,)).fetchall()
    return [AuditEntry(r["at"], r["action"], r["alias"], r["from_number"], r["to_number"], r["user"], r["host"],
                       r["detail"]) for r in rows]


def lineage_of(conn: sqlite3.Connection, version: Version) -> Lineage:
    """``version``'s ancestors (root first, following ``parent_id``) and every descendant (by ``parent_id``)."""
    ancestors, seen, current = [], {version.id}, version
    while True:
        row = conn.execute("SELECT parent_id FROM versions WHERE id = ?", (current.id,)).fetchone()
        if row is None or row[0] is None or row[0] in seen:
            break
        current = version_by_id(conn, row[0])
        seen.add(current.id)
        ancestors.insert(0, current)
    children: dict[int, list[Version]] = {}
    stack = [version.id]
    while stack:
        node = stack.pop()
        children[node] = children_of(conn, node)
        stack.extend(c.id for c in children[node] if c.id not in children)
    return Lineage(ancestors, version, children)
