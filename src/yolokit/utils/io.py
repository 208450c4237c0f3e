"""File helpers: atomic writes (temp file + fsync + rename), sha256, numbered run directories, the cache root, and
the checks that an output file or folder can be written (``check_output_file`` / ``check_output_dir``), made before
the work that fills it starts."""

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
    half-written file. A folder that cannot be created or written raises ``OutputPathError`` (an ``OSError`` too).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:  # a parent that is a file, read-only, /proc...: one line, nothing written
        raise _output_error(path, "file", err) from None
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
    if mkdir:  # created and probed now: an unwritable folder fails before the run, not at its first save
        check_output_dir(path, "output folder", "choose a writable folder with project=...")
    return path


def _output_error(path: Path, kind: str, err: OSError | str, hint: str = "") -> Exception:
    from yolokit.errors import OutputPathError

    reason = err if isinstance(err, str) else (err.strerror or str(err))
    return OutputPathError(f"cannot write the {kind} {path} ({reason}); "
                           f"{hint or 'choose a writable location'}")  # fmt: skip


def check_output_dir(folder: str | Path, what: str = "output folder", hint: str = "") -> Path:
    """Create ``folder`` (with its parents) and check a file can be created in it, by creating and removing an empty
    temporary file (so it holds for root, read-only mounts and ``/proc`` too, where permission bits say nothing).

    Raises:
        OutputPathError: one line: what, where, why (a parent that is a file, read-only, ...) and ``hint``.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise _output_error(folder, what, "it is a file, not a folder", hint)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".yolokit-write-check.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise _output_error(folder, what, err, hint) from None
    return folder


def check_output_file(path: str | Path, what: str = "output file", hint: str = "") -> Path:
    """Check ``path`` can be written (atomically, beside it) before the work that produces it starts: not a folder,
    not a read-only file, in a folder :func:`check_output_dir` accepts (created if missing).

    Raises:
        OutputPathError: one line naming ``what`` and ``path``.
    """
    path = Path(path)
    if path.is_dir():
        raise _output_error(path, what, "it is a folder", hint or "pass a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise _output_error(path, what, "the existing file is read-only", hint or "make it writable or choose "
                            "another file")  # fmt: skip
    check_output_dir(path.parent, f"folder of the {what}", hint)
    return path
