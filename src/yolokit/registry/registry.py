"""``Registry``: versions, aliases, lineage, tags and notes of weights files, in a directory, with no server.

    reg = Registry()                                   # $YOLOKIT_REGISTRY or ~/.yolokit/registry
    v1 = reg.register("yolo-demo", "pretrained.safetensors")             # -> yolo-demo:1
    v2 = reg.register("yolo-demo", "best.safetensors", parent="yolo-demo:1")   # relation inferred: finetuned
    reg.alias("yolo-demo:2", "production")             # moved atomically, recorded in the audit log
    reg.resolve("yolo-demo@production").number         # 2
    reg.pull("yolo-demo@production", "deploy/")        # sha256 verified before the file appears

Layout of the directory: ``registry.db`` (SQLite, :mod:`yolokit.registry.db`) and ``blobs/sha256/ab/abcd...``
(:mod:`yolokit.registry.store`). A registration stores the blob first (temp + fsync + rename), then inserts the
version row in one ``BEGIN IMMEDIATE`` transaction: a crash in between leaves an unreferenced blob, invisible to
every command, which ``gc`` removes. Readers (``list``, ``show``, ``history``, ``lineage``, ``audit``, ``diff``,
``pull``, ``resolve``) open the database read-only and never create or write it.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import socket
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from yolokit.errors import RegistryError
from yolokit.registry import records
from yolokit.registry.db import connect_reader, connect_writer, write
from yolokit.registry.names import Ref, check_alias, check_name, check_relation, default_registry_path, parse_ref
from yolokit.registry.records import AuditEntry, GcReport, Lineage, ModelSummary, Version
from yolokit.registry.store import BlobStore

__all__ = ["Registry", "STAGE_HOOKS", "infer_relation"]

logger = logging.getLogger(__name__)
DB_NAME = "registry.db"
# Called as hook(stage) at the points a crash must be survivable ("blob-stored": the blob is in place, its row not
# yet inserted). Empty in normal use; the crash tests add a hook that stops the process there.
STAGE_HOOKS: list[Callable[[str], None]] = []
_EXTENSIONS = {"safetensors": ".safetensors", "yolokit-pt": ".pt", "ultralytics-pt": ".pt", "yolov5-pt": ".pt",
               "onnx": ".onnx"}


def _stage(name: str) -> None:
    for hook in STAGE_HOOKS:
        hook(name)


def _who() -> tuple[str, str]:
    """(user, host) recorded with every change."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no passwd entry (containers)
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return user, socket.gethostname()


def _now() -> str:
    from yolokit.weights.metadata import utc_now_iso

    return utc_now_iso()


def infer_relation(parent: Version, fmt: str, precision: str, sha256: str) -> str:
    """The relation of a child file to its parent when none is given: ``quantized`` (INT8 from a float parent),
    ``exported`` (ONNX from PyTorch weights), ``converted`` (another format or precision, or the same bytes),
    else ``finetuned`` (same format and precision, other tensors)."""
    if precision == "int8" and parent.precision != "int8":
        return "quantized"
    if fmt == "onnx" and parent.format != "onnx":
        return "exported"
    if fmt != parent.format or precision != parent.precision or sha256 == parent.sha256:
        return "converted"
    return "finetuned"


def _check_tags(tags: dict[str, Any] | None) -> dict[str, str]:
    out = {}
    for key, value in (tags or {}).items():
        if not isinstance(key, str) or not key.strip() or "=" in key:
            raise RegistryError(f"bad tag key {key!r}: expected a non-empty word without '=' (e.g. --tag team=vision)")
        out[key] = str(value)
    return out


class Registry:
    """A weights registry in the directory ``path`` (default ``$YOLOKIT_REGISTRY`` or ``~/.yolokit/registry``)."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = default_registry_path(path)
        self.db_path = self.path / DB_NAME
        self.store = BlobStore(self.path)

    def __repr__(self) -> str:
        return f"Registry({str(self.path)!r})"

    # --- connections --------------------------------------------------------------------------------------------
    @contextmanager
    def _writer(self) -> Iterator[sqlite3.Connection]:
        conn = connect_writer(self.db_path)
        try:
            removed = self.store.clean_temp()  # reconcile: temp files of crashed writers
            if removed:
                logger.info("registry %s: removed %d temp file(s) left by interrupted writes", self.path, removed)
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection | None]:
        conn = connect_reader(self.db_path)
        try:
            yield conn
        finally:
            if conn is not None:
                conn.close()

    def _find(self, conn: sqlite3.Connection | None, ref: str | Ref) -> Version:
        ref = parse_ref(ref)
        if conn is None:
            raise RegistryError(f"no model named {ref.name!r}: the registry {self.path} is empty (register one with "
                                "'yolokit registry register NAME FILE')")
        return records.find_version(conn, ref, str(self.path))

    def _model(self, conn: sqlite3.Connection | None, name: str) -> sqlite3.Connection:
        """``conn`` once the model ``name`` is known to exist (it may have no versions left)."""
        check_name(name)
        if conn is None or records.model_id(conn, name) is None:
            self._find(conn, Ref(name))  # raises the "no model named" error
        return conn

    # --- register ----------------------------------------------------------------------------------------------
    def register(self, name: str, weights_file: str | os.PathLike, parent: str | Ref | None = None,
                 relation: str | None = None, *, tags: dict[str, Any] | None = None, note: str = "",
                 metrics: dict[str, Any] | None = None, dataset_fingerprint: str | None = None,
                 train_args: dict[str, Any] | None = None) -> Version:
        """Register a weights file as the next version ``name:N`` (1, 2, 3... without gaps) and return it.

        Args:
            name: the model name (checked: no path separators, ``..``, control characters...).
            weights_file: a real weights file (``.safetensors``, ``.pt``, yolokit ``.onnx``), detected by content.
            parent: ``NAME:N`` / ``NAME@ALIAS`` / ``NAME`` of the version it derives from. Default: the registered
                version whose sha256 is the file's ``parent_sha256`` metadata, if any.
            relation: ``finetuned`` | ``quantized`` | ``exported`` | ``converted``; default inferred from the formats
                and precisions (:func:`infer_relation`). Needs a parent.
            tags, note: free-form annotations; metrics, dataset_fingerprint, train_args: override what the file's
                provenance records.
        """
        from yolokit.registry.describe import describe_file
        from yolokit.utils.io import check_output_dir

        check_name(name)
        check_relation(relation)
        tags = _check_tags(tags)
        check_output_dir(self.path, "registry folder", "pass registry=PATH, or set YOLOKIT_REGISTRY to a writable one")
        info = describe_file(weights_file)
        fields = {"metrics": dict(metrics if metrics is not None else info.metrics),
                  "dataset_fingerprint": dataset_fingerprint or info.dataset_fingerprint,
                  "train_args": dict(train_args if train_args is not None else info.train_args)}
        with self._writer() as conn:
            self.store.put(info.path, expected=info.sha256)
            _stage("blob-stored")
            with write(conn):
                if not self.store.has(info.sha256):  # a gc between the copy and this lock removed it: store again
                    self.store.put(info.path, expected=info.sha256)
                parent_version = self._parent_for(conn, parent, info, name)
                if relation is not None and parent_version is None:
                    raise RegistryError(f"relation={relation!r} needs a parent: pass --parent NAME:N")
                if parent_version is not None and relation is None:
                    relation = infer_relation(parent_version, info.format, info.precision, info.sha256)
                version_id = self._insert(conn, name, info, fields, parent_version, relation, note, tags)
                _stage("row-inserted")
            version = records.version_by_id(conn, version_id)
        lineage = f" ({version.relation} from {version.parent})" if version.parent else ""
        logger.info("Registered %s (%s %s, sha256 %s...)%s", version.ref, version.format, version.precision,
                    version.sha256[:12], lineage)
        return version

    def _parent_for(self, conn: sqlite3.Connection, parent: str | Ref | None, info: Any, name: str) -> Version | None:
        if parent is not None:
            found = records.find_version(conn, parse_ref(parent), str(self.path))
            if info.parent_sha256 and info.parent_sha256 != found.sha256:
                logger.warning("%s records parent sha256 %s..., but the parent given, %s, has %s...", info.path,
                               info.parent_sha256[:12], found.ref, found.sha256[:12])
            return found
        if not info.parent_sha256:
            return None
        candidates = records.versions_by_sha256(conn, info.parent_sha256)
        if not candidates:
            logger.info("%s derives from sha256 %s..., which is not registered: no parent recorded", info.path,
                        info.parent_sha256[:12])
            return None
        same_model = [v for v in candidates if v.name == name]
        return (same_model or candidates)[0]

    def _insert(self, conn: sqlite3.Connection, name: str, info: Any, fields: dict[str, Any],
                parent: Version | None, relation: str | None, note: str, tags: dict[str, str]) -> int:
        """Insert the next version of ``name`` (inside the caller's write transaction); returns its row id."""
        user, host = _who()
        now = _now()
        conn.execute("INSERT OR IGNORE INTO models (name, created) VALUES (?, ?)", (name, now))
        mid, last = conn.execute("SELECT id, last_number FROM models WHERE name = ?", (name,)).fetchone()
        number = last + 1
        conn.execute("UPDATE models SET last_number = ? WHERE id = ?", (number, mid))
        cursor = conn.execute(
            "INSERT INTO versions (model_id, number, sha256, format, precision, task, architecture, scale, names, "
            "parameters, file_size, metrics, dataset_fingerprint, train_args, metadata, parent_id, parent_ref, "
            "relation, note, source, created, user, host) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "?, ?, ?, ?, ?, ?)",
            (mid, number, info.sha256, info.format, info.precision, info.task, info.architecture, info.scale,
             json.dumps({str(k): v for k, v in info.names.items()}), info.parameters, info.file_size,
             json.dumps(fields["metrics"], default=str), fields["dataset_fingerprint"],
             json.dumps(fields["train_args"], default=str), json.dumps(info.metadata, default=str),
             parent.id if parent else None, parent.ref if parent else None, relation, note,
             str(Path(info.path).resolve()), now, user, host))
        version_id = int(cursor.lastrowid)
        conn.executemany("INSERT INTO tags (version_id, key, value) VALUES (?, ?, ?)",
                         [(version_id, k, v) for k, v in tags.items()])
        detail = f"{relation} from {parent.ref}" if parent else ""
        self._log(conn, name, "register", to_number=number, detail=detail, user=user, host=host)
        return version_id

    @staticmethod
    def _log(conn: sqlite3.Connection, model: str, action: str, alias: str | None = None,
             from_number: int | None = None, to_number: int | None = None, detail: str = "",
             user: str | None = None, host: str | None = None) -> None:
        if user is None:
            user, host = _who()
        conn.execute("INSERT INTO audit (model, action, alias, from_number, to_number, at, user, host, detail) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (model, action, alias, from_number, to_number, _now(), user, host, detail))

    # --- aliases, tags, notes ------------------------------------------------------------------------------------
    def alias(self, ref: str | Ref, alias: str) -> Version:
        """Point ``alias`` of the version's model at the version (created or moved atomically; audited)."""
        check_alias(alias)
        with self._writer() as conn, write(conn):
            version = records.find_version(conn, parse_ref(ref), str(self.path))
            mid = records.model_id(conn, version.name)
            old = conn.execute("SELECT v.number FROM aliases a JOIN versions v ON v.id = a.version_id "
                               "WHERE a.model_id = ? AND a.alias = ?", (mid, alias)).fetchone()
            if old is not None and old[0] == version.number:
                return version
            conn.execute("INSERT INTO aliases (model_id, alias, version_id, updated) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT (model_id, alias) DO UPDATE SET version_id = excluded.version_id, "
                         "updated = excluded.updated", (mid, alias, version.id, _now()))
            self._log(conn, version.name, "alias", alias, old[0] if old else None, version.number)
        logger.info("%s@%s -> %s%s", version.name, alias, version.ref, f" (was :{old[0]})" if old else "")
        return version

    def unalias(self, name: str, alias: str) -> int:
        """Remove ``name@alias``; returns the number it pointed to (audited)."""
        check_name(name)
        with self._writer() as conn, write(conn):
            version = records.find_version(conn, Ref(name, alias=check_alias(alias)), str(self.path))
            conn.execute("DELETE FROM aliases WHERE model_id = ? AND alias = ?", (records.model_id(conn, name), alias))
            self._log(conn, name, "unalias", alias, version.number, None)
        return version.number

    def tag(self, ref: str | Ref, **tags: Any) -> Version:
        """Set (or replace) free-form tags on a version."""
        tags = _check_tags(tags)
        with self._writer() as conn, write(conn):
            version = records.find_version(conn, parse_ref(ref), str(self.path))
            conn.executemany("INSERT OR REPLACE INTO tags (version_id, key, value) VALUES (?, ?, ?)",
                             [(version.id, k, v) for k, v in tags.items()])
            self._log(conn, version.name, "tag", to_number=version.number,
                      detail=", ".join(f"{k}={v}" for k, v in tags.items()))
            return records.version_by_id(conn, version.id)

    def set_note(self, ref: str | Ref, note: str) -> Version:
        """Replace a version's note."""
        with self._writer() as conn, write(conn):
            version = records.find_version(conn, parse_ref(ref), str(self.path))
            conn.execute("UPDATE versions SET note = ? WHERE id = ?", (str(note), version.id))
            self._log(conn, version.name, "note", to_number=version.number, detail=str(note)[:200])
            return records.version_by_id(conn, version.id)

    # --- delete, gc ----------------------------------------------------------------------------------------------
    def delete(self, ref: str | Ref, force: bool = False) -> Version:
        """Delete a version (its number is never reused). Refused while an alias or a child points at it, unless
        ``force``: then its aliases are removed (audited) and its children keep ``parent`` as text only. The blob
        stays until ``gc``."""
        with self._writer() as conn, write(conn):
            version = records.find_version(conn, parse_ref(ref), str(self.path))
            children = records.children_of(conn, version.id)
            if (version.aliases or children) and not force:
                held = [f"alias {a}" for a in version.aliases] + [f"child {c.ref}" for c in children]
                raise RegistryError(f"{version.ref} is still used ({', '.join(held)}): move the aliases / delete the "
                                    "children first, or pass --force")
            for alias in version.aliases:
                self._log(conn, version.name, "unalias", alias, version.number, None, detail=f"{version.ref} deleted")
            conn.execute("DELETE FROM aliases WHERE version_id = ?", (version.id,))
            conn.execute("DELETE FROM versions WHERE id = ?", (version.id,))
            self._log(conn, version.name, "delete", from_number=version.number, detail=f"sha256 {version.sha256}")
        logger.info("Deleted %s (its file stays until 'yolokit registry gc')", version.ref)
        return version

    def gc(self, dry_run: bool = False) -> GcReport:
        """Remove blobs no version refers to (left by deletes or interrupted registrations) and stale temp files.

        Holds the write lock while it looks, so a registration cannot slip in between (one that stored its blob
        before the lock stores it again inside its own transaction)."""
        if not self.db_path.is_file():
            return GcReport([], 0, 0, 0, dry_run)
        with self._writer() as conn, write(conn):
            used = {row[0] for row in conn.execute("SELECT DISTINCT sha256 FROM versions")}
            unused = [d for d in self.store.iter_digests() if d not in used]
            freed = sum(self.store.path_for(d).stat().st_size for d in unused)
            if not dry_run:
                for digest in unused:
                    self.store.remove(digest)
            temp = 0 if dry_run else self.store.clean_temp()
        return GcReport(unused, freed, temp, len(used), dry_run)

    # --- reads --------------------------------------------------------------------------------------------------
    def resolve(self, ref: str | Ref) -> Version:
        """The version ``ref`` names: ``NAME:N``, ``NAME@ALIAS`` or ``NAME`` (the latest)."""
        with self._reader() as conn:
            return self._find(conn, ref)

    show = resolve

    def list(self) -> list[ModelSummary]:  # noqa: A003 - the command's name
        """Every model with its version count, latest number and aliases (empty for a new registry)."""
        with self._reader() as conn:
            return [] if conn is None else records.model_summaries(conn)

    def history(self, name: str) -> list[Version]:
        """Every version of ``name``, oldest first."""
        with self._reader() as conn:
            return records.versions_of(self._model(conn, name), name)

    def find_sha256(self, digest: str) -> list[Version]:
        """Every version whose file has this sha256, oldest first (empty when none or no registry)."""
        with self._reader() as conn:
            return [] if conn is None else records.versions_by_sha256(conn, digest)

    def children(self, ref: str | Ref) -> list[Version]:
        with self._reader() as conn:
            return records.children_of(conn, self._find(conn, ref).id)

    def lineage(self, ref: str | Ref) -> Lineage:
        """Ancestors (root first) and descendants of a version (across model names)."""
        with self._reader() as conn:
            return records.lineage_of(conn, self._find(conn, ref))

    def audit(self, name: str) -> list[AuditEntry]:
        """The model's append-only log: registrations, alias moves (from, to), deletions, with when, user, host."""
        with self._reader() as conn:
            return records.audit_entries(self._model(conn, name), name)

    # --- files ---------------------------------------------------------------------------------------------------
    def verified_bytes(self, ref: str | Ref) -> tuple[Version, bytes]:
        """A version and its file's bytes, sha256-checked (``RegistryError`` naming the version if not intact)."""
        version = self.resolve(ref)
        return version, self.store.open_verified(version.sha256, version.ref)

    def verified_path(self, ref: str | Ref) -> tuple[Version, Path]:
        """A version and its blob's path, after checking the blob's sha256."""
        version = self.resolve(ref)
        return version, self.store.check(version.sha256, version.ref)

    def verified_weights(self, ref: str | Ref | Version) -> Any:
        """A PyTorch version's ``WeightsFile`` (``yolokit.weights.read_weights``) from its blob, checked twice: the
        blob's sha256 before reading, and the sha256 of the bytes the reader read."""
        from yolokit.weights import read_weights

        version = ref if isinstance(ref, Version) else self.resolve(ref)
        path = self.store.check(version.sha256, version.ref)
        weights = read_weights(path)
        if weights.sha256 != version.sha256:
            raise RegistryError(f"{version.ref}: its file changed while being read (sha256 {weights.sha256[:12]}...); "
                                "refusing to use it")
        return weights

    def pull(self, ref: str | Ref, dest: str | os.PathLike) -> Path:
        """Copy a version's file to ``dest`` (a file, or a directory: ``NAME-vN.<ext>`` inside) and return the path.

        The copy is hashed as it is written to a temp file beside ``dest``; only a matching sha256 is renamed into
        place, so ``dest`` never holds bytes other than the registered ones."""
        version = self.resolve(ref)
        target = Path(dest)
        if target.is_dir() or str(dest).endswith(("/", os.sep)):
            target = target / f"{version.name}-v{version.number}{_EXTENSIONS.get(version.format, '')}"
        self.store.copy_verified(version.sha256, version.ref, target)
        logger.info("Pulled %s -> %s (sha256 verified)", version.ref, target)
        return target

    def diff(self, a: str | Ref, b: str | Ref) -> dict[str, Any]:
        """Differences between two versions: metadata, metrics, classes, architecture and per-layer weights
        (:func:`yolokit.registry.diff.diff_versions`)."""
        from yolokit.registry.diff import diff_versions

        return diff_versions(self, self.resolve(a), self.resolve(b))
