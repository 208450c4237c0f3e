"""Content-addressed blob store: ``blobs/sha256/ab/abcdef...`` (read-only files), identical bytes stored once.

    store = BlobStore(root)
    digest, size = store.put("best.safetensors")   # copied + hashed in one pass, fsynced, renamed into place
    path = store.path_for(digest)                  # blobs/sha256/<first 2 hex>/<64 hex>
    data = store.read_verified(digest, "yolo:3")   # the bytes, or RegistryError if missing / tampered

Writes go to ``blobs/tmp/<host>-<pid>-<random>.tmp``, are fsynced, made read-only and renamed (atomic on POSIX),
then the directory is fsynced: a crash leaves either the whole blob or a temp file, never a partial blob. Temp files
of dead processes on this host are removed by :meth:`BlobStore.clean_temp` (run when a writer opens the registry
and by ``gc``). A blob nothing refers to is invisible (versions live in the database) and ``gc`` removes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from yolokit.errors import RegistryError

__all__ = ["BlobStore", "hash_stream"]

logger = logging.getLogger(__name__)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
_STALE_SECONDS = 24 * 3600  # a temp file of another host is removed after a day


def hash_stream(handle: BinaryIO, out: BinaryIO | None = None) -> tuple[str, int]:
    """(hex sha256, size) of ``handle``'s remaining bytes, copying them to ``out`` when given."""
    digest, size = hashlib.sha256(), 0
    for chunk in iter(lambda: handle.read(_CHUNK), b""):
        digest.update(chunk)
        size += len(chunk)
        if out is not None:
            out.write(chunk)
    return digest.hexdigest(), size


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class BlobStore:
    """The files of a registry, addressed by their sha256 (see the module docstring)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs" / "sha256"
        self.tmp = self.root / "blobs" / "tmp"

    def path_for(self, digest: str) -> Path:
        """``blobs/sha256/ab/abcd...`` for a 64-hex-digit sha256."""
        if not _HEX64.match(digest):
            raise RegistryError(f"bad sha256 {digest!r}: expected 64 lowercase hex digits")
        return self.blobs / digest[:2] / digest

    def has(self, digest: str) -> bool:
        return self.path_for(digest).is_file()

    def put(self, source: str | os.PathLike, expected: str | None = None) -> tuple[str, int]:
        """Store the bytes of ``source`` -> ``(sha256, size)``; nothing is written when the blob already exists.

        ``expected``: the sha256 the caller read the file with; different bytes now (the file changed in between)
        raise ``RegistryError`` and store nothing.
        """
        self.tmp.mkdir(parents=True, exist_ok=True)
        name = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(6).hex()}.tmp"
        tmp = self.tmp / name
        try:
            with open(source, "rb") as src, open(tmp, "xb") as out:
                digest, size = hash_stream(src, out)
                out.flush()
                os.fsync(out.fileno())
            if expected is not None and digest != expected:
                raise RegistryError(f"{source} changed while it was being registered (sha256 {expected[:12]}... when "
                                    f"read, {digest[:12]}... when stored): register it again once it is complete")
            final = self.path_for(digest)
            if final.is_file():
                return digest, size
            os.chmod(tmp, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            _fsync_dir(final.parent)
            logger.debug("stored blob %s (%d bytes)", digest, size)
            return digest, size
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def open_verified(self, digest: str, what: str) -> bytes:
        """The blob's bytes after checking their sha256; ``what`` (``NAME:N``) names the version in errors."""
        path = self.path_for(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise RegistryError(f"{what}: its file {path} is missing from the registry; pull it from a backup or "
                                f"delete {what}") from None
        found = hashlib.sha256(data).hexdigest()
        if found != digest:
            raise RegistryError(f"{what}: its file {path} was modified (sha256 {found[:12]}..., registered "
                                f"{digest[:12]}...); refusing to use it: restore the file or delete {what}")
        return data

    def check(self, digest: str, what: str) -> Path:
        """The blob's path after checking its sha256 (streamed); ``RegistryError`` if missing or tampered."""
        path = self.path_for(digest)
        try:
            with open(path, "rb") as handle:
                found, _ = hash_stream(handle)
        except FileNotFoundError:
            raise RegistryError(f"{what}: its file {path} is missing from the registry; pull it from a backup or "
                                f"delete {what}") from None
        if found != digest:
            raise RegistryError(f"{what}: its file {path} was modified (sha256 {found[:12]}..., registered "
                                f"{digest[:12]}...); refusing to use it: restore the file or delete {what}")
        return path

    def copy_verified(self, digest: str, what: str, target: Path) -> Path:
        """Copy the blob to ``target`` through a temp file beside it, hashing as it goes; only matching bytes are
        renamed into place (``RegistryError`` naming ``what`` otherwise, with ``target`` untouched)."""
        from yolokit.utils.io import atomic_open

        blob = self.path_for(digest)
        if not blob.is_file():
            self.check(digest, what)  # raises the "missing" error
        with open(blob, "rb") as src, atomic_open(target, "wb") as out:
            found, _ = hash_stream(src, out)
            if found != digest:
                raise RegistryError(f"{what}: its file {blob} was modified (sha256 {found[:12]}..., registered "
                                    f"{digest[:12]}...); nothing written to {target}: restore the file")
        return target

    def iter_digests(self) -> Iterator[str]:
        """Every stored blob's sha256 (files with other names are skipped)."""
        if not self.blobs.is_dir():
            return
        for sub in sorted(self.blobs.iterdir()):
            if sub.is_dir():
                for path in sorted(sub.iterdir()):
                    if _HEX64.match(path.name) and path.name[:2] == sub.name:
                        yield path.name

    def remove(self, digest: str) -> int:
        """Delete a blob; returns the bytes freed (0 if it was not there)."""
        path = self.path_for(digest)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only when empty
        return size

    def clean_temp(self) -> int:
        """Remove temp files left by dead processes of this host (or older than a day); returns how many."""
        if not self.tmp.is_dir():
            return 0
        host, removed = socket.gethostname(), 0
        for path in self.tmp.iterdir():
            writer_host, _, pid = path.name.rpartition("-")[0].rpartition("-")  # <host>-<pid>-<random>.tmp
            stale = writer_host == host and pid.isdigit() and not _pid_alive(int(pid))
            with contextlib.suppress(FileNotFoundError):
                stale = stale or time.time() - path.stat().st_mtime > _STALE_SECONDS
                if stale:
                    path.unlink()
                    removed += 1
        return removed
