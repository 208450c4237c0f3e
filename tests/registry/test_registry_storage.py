"""Names and references, the blob store and the database (schema, migrations, read-only readers)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import sys
from pathlib import Path

import pytest

from yolokit.errors import RegistryError
from yolokit.registry import db
from yolokit.registry.names import Ref, check_alias, check_name, default_registry_path, parse_ref
from yolokit.registry.store import BlobStore


@pytest.mark.parametrize("name", ["yolo-demo", "yolo26n_coco.v2", "a", "Ünïcode-名前"])
def test_valid_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name, why", [
    ("a/b", "'/'"), ("a\\b", "'\\\\'"), ("..", "'..'"), ("x..y", "'..'"), ("   ", "whitespace only"), ("", "empty"),
    (" x", "leading or trailing"), ("a\x00b", "control character"), ("a\nb", "control character"),
    ("a:b", "':'"), ("a@b", "'@'"), ("x" * 129, "129 characters"),
])
def test_bad_names_are_refused_with_the_reason(name, why):
    with pytest.raises(RegistryError, match="invalid model name") as err:
        check_name(name)
    assert why in str(err.value)
    assert "\n" not in str(err.value).replace(repr(name), "")


def test_aliases_refuse_latest_and_numbers():
    assert check_alias("production") == "production"
    for alias in ("latest", "3", "a/b"):
        with pytest.raises(RegistryError, match="invalid alias"):
            check_alias(alias)


def test_parse_ref_forms():
    assert parse_ref("yolo:3") == Ref("yolo", number=3)
    assert parse_ref("yolo@production") == Ref("yolo", alias="production")
    assert parse_ref("registry://yolo") == Ref("yolo")
    assert parse_ref("registry://yolo@latest") == Ref("yolo", alias="latest")
    assert str(parse_ref("yolo:12")) == "yolo:12"
    for bad in ("yolo:0", "yolo:x", "yolo:", "../x:1", "yolo@"):
        with pytest.raises(RegistryError):
            parse_ref(bad)


def test_default_path_order(monkeypatch, tmp_path):
    monkeypatch.setenv("YOLOKIT_REGISTRY", str(tmp_path / "env"))
    assert default_registry_path() == tmp_path / "env"
    assert default_registry_path(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("YOLOKIT_REGISTRY")
    assert default_registry_path().parts[-2:] == (".yolokit", "registry")


def test_store_is_content_addressed_read_only_and_dedups(tmp_path):
    store = BlobStore(tmp_path / "reg")
    src = tmp_path / "a.bin"
    src.write_bytes(b"weights" * 1000)
    digest, size = store.put(src)
    assert digest == hashlib.sha256(src.read_bytes()).hexdigest() and size == 7000
    path = store.path_for(digest)
    assert path == tmp_path / "reg" / "blobs" / "sha256" / digest[:2] / digest
    assert stat.S_IMODE(path.stat().st_mode) & 0o222 == 0  # read-only
    copy = tmp_path / "b.bin"
    copy.write_bytes(src.read_bytes())
    assert store.put(copy) == (digest, 7000)
    assert list(store.iter_digests()) == [digest]
    assert list(store.tmp.iterdir()) == []  # no temp file left behind


def test_store_refuses_a_file_that_changed_and_detects_tampering(tmp_path):
    store = BlobStore(tmp_path)
    src = tmp_path / "a.bin"
    src.write_bytes(b"abc")
    with pytest.raises(RegistryError, match="changed while it was being registered"):
        store.put(src, expected="0" * 64)
    assert list(store.iter_digests()) == []
    digest, _ = store.put(src)
    path = store.path_for(digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"abd")
    with pytest.raises(RegistryError, match="x:1: its file .* was modified"):
        store.open_verified(digest, "x:1")
    path.unlink()
    with pytest.raises(RegistryError, match="x:1: its file .* is missing"):
        store.check(digest, "x:1")


def test_stale_temp_files_of_dead_processes_are_cleaned(tmp_path):
    import socket
    import subprocess
    import sys

    store = BlobStore(tmp_path)
    store.tmp.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    (store.tmp / f"{host}-{int(dead.stdout)}-abc.tmp").write_bytes(b"x")
    alive = store.tmp / f"{host}-{os.getpid()}-def.tmp"
    alive.write_bytes(b"y")
    assert store.clean_temp() == 1
    assert list(store.tmp.iterdir()) == [alive]


def test_schema_wal_foreign_keys_and_append_only_audit(tmp_path):
    conn = db.connect_writer(tmp_path / "r.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.schema_version(conn) == db.SCHEMA_VERSION == 1
    with pytest.raises(sqlite3.IntegrityError):  # a version of a model that does not exist
        conn.execute("INSERT INTO versions (model_id, number, sha256, format, precision, names, file_size, created) "
                     "VALUES (99, 1, ?, 'onnx', 'fp32', '{}', 1, 'now')", ("0" * 64,))
    conn.execute("INSERT INTO audit (model, action, at) VALUES ('m', 'register', 'now')")
    for statement in ("UPDATE audit SET action = 'x'", "DELETE FROM audit"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(statement)
    conn.close()


def test_migrations_apply_in_order_and_newer_schemas_are_refused(tmp_path, monkeypatch):
    path = tmp_path / "r.db"
    db.connect_writer(path).close()
    monkeypatch.setattr(db, "MIGRATIONS", [*db.MIGRATIONS, (2, "ALTER TABLE versions ADD COLUMN extra TEXT;")])
    monkeypatch.setattr(db, "SCHEMA_VERSION", 2)
    conn = db.connect_writer(path)
    assert db.schema_version(conn) == 2
    assert "extra" in [row[1] for row in conn.execute("PRAGMA table_info(versions)")]
    conn.close()
    monkeypatch.setattr(db, "SCHEMA_VERSION", 1)
    monkeypatch.setattr(db, "MIGRATIONS", db.MIGRATIONS[:1])
    with pytest.raises(RegistryError, match="schema version 2; this yolokit knows versions up to 1: upgrade"):
        db.connect_writer(path)
    with pytest.raises(RegistryError, match="upgrade yolokit"):
        db.connect_reader(path)


def test_reader_never_creates_or_writes_the_database(tmp_path):
    path = tmp_path / "r.db"
    assert db.connect_reader(path) is None
    assert not path.exists()
    db.connect_writer(path).close()
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    conn = db.connect_reader(path)
    assert conn.execute("SELECT count(*) FROM models").fetchone()[0] == 0
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("INSERT INTO models (name, created) VALUES ('x', 'now')")
    conn.close()
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


_AS_NOBODY = """
import sqlite3, sys
from pathlib import Path
from yolokit.registry import db
path = Path(sys.argv[1])
try:
    sqlite3.connect(f"file:{path}?mode=ro", uri=True).execute("SELECT count(*) FROM models").fetchone()
    print("plain-ok")
except sqlite3.OperationalError:
    print("plain-fails")
print(db.connect_reader(path).execute("SELECT name FROM models").fetchone()[0])
"""


def _others_can_enter(path: Path) -> bool:
    """True when every folder from ``/`` down to ``path`` can be traversed by other users (o+x)."""
    return all(folder.stat().st_mode & 0o001 for folder in [path, *path.parents])


_SOURCE = Path(db.__file__).resolve().parents[2]  # the yolokit source tree, for the other user's interpreter


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or not os.path.exists("/usr/bin/setpriv"),
                    reason="needs root and setpriv to run a reader as another user")
@pytest.mark.skipif(not (_others_can_enter(_SOURCE) and _others_can_enter(Path(sys.prefix).resolve())),
                    reason="the checkout or its environment lies in a folder other users cannot enter (e.g. /root)")
def test_reader_in_a_read_only_directory_without_shm(tmp_path):
    """WAL + read-only: without a -shm file and no right to create one, the reader opens the file immutable."""
    import shutil
    import subprocess
    import tempfile

    folder = tempfile.mkdtemp(prefix="yolokit-ro-", dir="/tmp")
    try:
        os.chmod(folder, 0o755)  # readable, not writable, by nobody
        path = os.path.join(folder, "r.db")
        conn = db.connect_writer(Path(path))
        conn.execute("INSERT INTO models (name, created) VALUES ('shared', 'now')")
        conn.close()
        assert not os.path.exists(path + "-shm")  # the last writer removed it
        src = str(_SOURCE)
        out = subprocess.run(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              sys.executable, "-c", _AS_NOBODY, path], capture_output=True, text=True,
                             env={"PYTHONPATH": src, "PATH": os.environ.get("PATH", "")}, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["plain-fails", "shared"]
        assert sorted(os.listdir(folder)) == ["r.db"]
    finally:
        shutil.rmtree(folder)


def test_a_database_file_without_schema_reads_as_empty(tmp_path):
    path = tmp_path / "r.db"
    sqlite3.connect(path).close()  # a writer that stopped before its first migration committed
    assert path.is_file() and db.connect_reader(path) is None
