"""File helpers: atomic writes (temp file + fsync + rename), sha256, numbered run directories, the cache root."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

CACHE_ENV = "YOLOKIT_CACHE_DIR"


def format_size(num_bytes: int | float) -> str:
    """A file size in yolokit's one unit, MB = 10**6 bytes (as the CLI and docs print it): ``"9.61 MB"``; sizes
    under 0.01 MB in kB (10**3 bytes): ``"3.2 kB"``."""
    if num_bytes < 10_000:
        return f"{num_bytes / 1e3:.1f} kB"
    return f"{num_bytes / 1e6:.2f} MB"


def cache_root() -> Path:
    """yolokit's cache folder: ``$YOLOKIT_CACHE_DIR``, else ``~/.cache/yolokit`` (downloads, exported graphs)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "yolokit")


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success fsync it and rename it over ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was, so a reader never sees a
    half-written file.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically and return the path."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def increment_dir(base: str | Path, exist_ok: bool = False, mkdir: bool = True) -> Path:
    """Return ``base`` if it is free (or ``exist_ok``), else ``base2``, ``base3``, ... (first free number).

    ``runs/predict`` -> ``runs/predict2`` -> ``runs/predict3``.
    """
    base = Path(base)
    path = base
    if not exist_ok and path.exists():
        number = 2
        while (path := base.with_name(f"{base.name}{number}")).exists():
            number += 1
    if mkdir:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # unwritable or missing parent: one line, not a traceback
            from yolokit.errors import ConfigError

            raise ConfigError(f"cannot create the output folder {path} ({err.strerror or err}); choose a writable "
                              "folder with project=...") from None  # fmt: skip
    return path
