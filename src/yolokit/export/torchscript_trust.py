"""Which TorchScript files may be loaded: the ones yolokit exported here, and the ones the user says to trust.

A TorchScript file is a program: ``torch.jit.load`` compiles its ``code/`` and runs a module's ``__setstate__``;
``forward`` runs on every call. TorchScript can reach files (``torch.from_file(..., shared=True)`` creates and writes
one) and custom ops, so a file from an untrusted source is refused before torch sees it (``UntrustedCodeError``).

**Recognising yolokit's own exports.** When yolokit writes a TorchScript file it records the sha256 of the file's
exact bytes in ``$YOLOKIT_CACHE_DIR/trusted/torchscript/<sha256>.json`` (default ``~/.cache/yolokit``). On load the
file is read once into memory, hashed, and only those bytes go to ``torch.jit.load`` (no swap between check and
load). This cannot be forged: a hash written *inside* the file (e.g. in ``yolokit.json``) would prove nothing, anyone
can compute it; the record lives outside the file, in a folder only the user writes, and making another file match a
recorded sha256 would need a second preimage. Changing one byte of a recorded file makes it untrusted again. Whoever
can write the cache folder can mark files trusted: do not point ``YOLOKIT_CACHE_DIR`` at a folder others may write.

**Opting in.** ``trusted=True`` (``YOLO(path, trusted=True)``, ``load_torchscript(path, trusted=True)``, the CLI key
``trusted=True``) loads a file not recorded, after the archive checks of ``weights._torchscript_archive``;
:func:`trust_torchscript` trusts one file's current bytes for this process (``persist=True``: also for later runs).
"""

from __future__ import annotations

import datetime
import hashlib
import logging
from pathlib import Path

__all__ = ["is_trusted", "record_trusted", "trust_torchscript", "trust_folder"]
logger = logging.getLogger(__name__)
_SESSION: set[str] = set()  # sha256 of bytes trusted in this process (exported here, or trusted explicitly)


def trust_folder() -> Path:
    """``$YOLOKIT_CACHE_DIR/trusted/torchscript``: one ``<sha256>.json`` per TorchScript file yolokit wrote."""
    from yolokit.utils.io import cache_root

    return cache_root() / "trusted" / "torchscript"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_trusted(data: bytes, path: str | Path | None = None, *, persist: bool = True) -> str:
    """Trust the TorchScript ``data`` yolokit just produced (in this process; ``persist``: also on disk, by the
    main process, best effort: an unwritable cache logs a warning). Returns its sha256."""
    return _remember(_digest(data), len(data), path, persist)


def _remember(digest: str, size: int, path: str | Path | None, persist: bool) -> str:
    from yolokit.utils.dist import is_main_process
    from yolokit.utils.io import atomic_write_json

    _SESSION.add(digest)
    if persist and is_main_process():
        record = {"sha256": digest, "bytes": size, "path": str(path) if path else None,
                  "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        try:
            atomic_write_json(trust_folder() / f"{digest}.json", record)
        except OSError as err:  # includes OutputPathError: the export itself is fine, only the record is missing
            logger.warning("cannot record the exported TorchScript file as yolokit's own in %s (%s): load it with "
                           "trusted=True, or set YOLOKIT_CACHE_DIR to a writable folder", trust_folder(), err)
    return digest


def is_trusted(data: bytes) -> bool:
    """Whether ``data`` (a whole TorchScript file) was exported by yolokit here or trusted in this process."""
    digest = _digest(data)
    return digest in _SESSION or (trust_folder() / f"{digest}.json").is_file()


def trust_torchscript(path: str | Path, *, persist: bool = False) -> str:
    """Trust the current bytes of the TorchScript file ``path`` (this process; ``persist``: later runs too), as the
    CLI key ``trusted=True`` does. Only these exact bytes: a later change makes the file untrusted. Returns the
    sha256."""
    from yolokit.errors import WeightsError
    from yolokit.utils.io import sha256_file

    try:
        digest, size = sha256_file(path), Path(path).stat().st_size
    except OSError as err:
        raise WeightsError(f"{path}: cannot read the file to trust it ({err.strerror or err})") from None
    logger.info("trusting the TorchScript file %s (sha256 %s...): its code will run when it is loaded", path,
                digest[:16])
    return _remember(digest, size, path, persist)
