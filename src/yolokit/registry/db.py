"""The registry database: SQLite in WAL mode, a schema version table and ordered migrations, foreign keys on.

    conn = connect_writer(root / "registry.db")     # creates / migrates; every write in `with write(conn):`
    with write(conn):                               # BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error)
        conn.execute(...)
    conn = connect_reader(root / "registry.db")     # read-only (mode=ro); never writes the database file

Writers take SQLite's write lock at the start of each transaction (``BEGIN IMMEDIATE``), so two processes that
number versions never read the same "last number": numbering is gap-free and nothing is lost. ``busy_timeout``
makes a writer wait for the lock (30 s) instead of failing.

Readers open the file with ``mode=ro``. In WAL mode a reader needs the ``-shm`` index beside the database; SQLite
creates it (and an empty ``-wal``) when the directory is writable, which leaves the database file itself untouched.
On a read-only directory without them, the reader falls back to ``immutable=1`` (no locking: fine for a registry on
read-only media, where nobody writes).

Schema (version 1): ``models`` (name, last_number: numbers are never reused, even after a delete), ``versions``
(one immutable row per ``NAME:N``, its lineage ``parent_id`` + ``relation``), ``tags``, ``aliases`` (unique per
model), ``audit`` (append-only: triggers refuse UPDATE and DELETE).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from yolokit.errors import RegistryError

__all__ = ["SCHEMA_VERSION", "MIGRATIONS", "connect_reader", "connect_writer", "schema_version", "write"]

logger = logging.getLogger(__name__)
BUSY_TIMEOUT_S = 30.0

_V1 = """
CREATE TABLE models (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    last_number INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL
);
CREATE TABLE versions (
    id INTEGER PRIMARY KEY,
    model_id INTEGER NOT NULL REFERENCES models(id),
    number INTEGER NOT NULL CHECK (number >= 1),
    sha256 TEXT NOT NULL CHECK (length(sha256) = 64),
    format TEXT NOT NULL,
    precision TEXT NOT NULL,
    task TEXT,
    architecture TEXT,
    scale TEXT,
    names TEXT NOT NULL,
    parameters INTEGER,
    file_size INTEGER NOT NULL,
    metrics TEXT NOT NULL DEFAULT '{}',
    dataset_fingerprint TEXT,
    train_args TEXT NOT NULL DEFAULT '{}',
    metadata TEXT NOT NULL DEFAULT '{}',
    parent_id INTEGER REFERENCES versions(id) ON DELETE SET NULL,
    parent_ref TEXT,
    relation TEXT CHECK (relation IN ('finetuned', 'quantized', 'exported', 'converted')),
    note TEXT NOT NULL DEFAULT '',
    source TEXT,
    created TEXT NOT NULL,
    user TEXT,
    host TEXT,
    UNIQUE (model_id, number)
);
CREATE INDEX versions_sha256 ON versions(sha256);
CREATE INDEX versions_parent ON versions(parent_id);
CREATE TABLE tags (
    version_id INTEGER NOT NULL REFERENCES versions(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (version_id, key)
);
CREATE TABLE aliases (
    model_id INTEGER NOT NULL REFERENCES models(id),
    alias TEXT NOT NULL,
    version_id INTEGER NOT NULL REFERENCES versions(id),
    updated TEXT NOT NULL,
    PRIMARY KEY (model_id, alias)
);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    action TEXT NOT NULL,
    alias TEXT,
    from_number INTEGER,
    to_number INTEGER,
    at TEXT NOT NULL,
    user TEXT,
    host TEXT,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""

# (version, SQL script): applied in order, each in the transaction that records it. Append; never edit one.
MIGRATIONS: list[tuple[int, str]] = [(1, _V1)]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def _configure(conn: sqlite3.Connection) -> sqlite3.Connection:
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    return conn


def _sqlite_error(db: Path, err: sqlite3.Error, doing: str) -> RegistryError:
    return RegistryError(f"registry database {db}: {doing} failed ({err}); check the path and its permissions")


def connect_writer(db: Path) -> sqlite3.Connection:
    """A connection that may write: creates the database (WAL) and applies pending migrations."""
    db.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = _configure(sqlite3.connect(db, timeout=BUSY_TIMEOUT_S, isolation_level=None))
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")  # persistent: recorded in the database file
        conn.execute("PRAGMA synchronous = FULL")
        _migrate(conn, db)
    except sqlite3.Error as err:
        raise _sqlite_error(db, err, "opening for writing") from None
    return conn


def connect_reader(db: Path) -> sqlite3.Connection | None:
    """A read-only connection, or None when the database does not exist (an empty registry: nothing is created)."""
    if not db.is_file():
        return None
    uri = f"file:{quote(str(db.resolve()))}"
    try:
        conn = _configure(sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None))
        version = schema_version(conn)
    except sqlite3.OperationalError as err:
        if "unable to open" not in str(err) and "readonly" not in str(err):
            raise _sqlite_error(db, err, "opening read-only") from None
        logger.debug("read-only open of %s failed (%s): opening it as immutable", db, err)
        conn = _configure(sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None))
        version = schema_version(conn)
    if version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
        conn.close()  # created by a writer that stopped before its first migration committed: still empty
        return None
    _check_version(version, db, reader=True)
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    """The schema version recorded in the database (0 for an empty database)."""
    found = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
    if found is None:
        return 0
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def _check_version(version: int, db: Path, reader: bool) -> None:
    if version > SCHEMA_VERSION:
        raise RegistryError(f"registry database {db} has schema version {version}; this yolokit knows versions up "
                            f"to {SCHEMA_VERSION}: upgrade yolokit (pip install -U yolokit)")
    if reader and version < SCHEMA_VERSION:
        raise RegistryError(f"registry database {db} has schema version {version}, this yolokit reads version "
                            f"{SCHEMA_VERSION}: run a writing command once (e.g. 'yolokit registry gc') to migrate it")


def _migrate(conn: sqlite3.Connection, db: Path) -> None:
    """Apply the migrations above the database's version, each in its own write transaction."""
    if schema_version(conn) == SCHEMA_VERSION:
        return
    with write(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied TEXT NOT NULL)")
        current = schema_version(conn)
        _check_version(current, db, reader=False)
        for version, script in MIGRATIONS:
            if version > current:
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version VALUES (?, datetime('now'))", (version,))
                logger.info("registry %s: schema migrated to version %d", db, version)


def _statements(script: str) -> list[str]:
    """The statements of a migration script (``sqlite3.complete_statement`` keeps triggers whole)."""
    out, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            out.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        out.append(buffer.strip())
    return out


@contextlib.contextmanager
def write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` (the write lock, waiting up to ``busy_timeout``) ... ``COMMIT``; ``ROLLBACK`` on error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
