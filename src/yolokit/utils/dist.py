"""Rank awareness for ``torch.distributed`` / ``torchrun``, read from the environment (no torch import).

Only the main process (global rank 0) writes files, prints progress bars or logs summaries. Code that writes to
disk asks :func:`is_main_process` first, so multi-process runs never race on the same file.
:func:`parse_device_list` / :func:`check_device_list` read a multi-GPU ``device=0,1,...`` and
:func:`requested_processes` counts the processes it asks for (the training processes' launch lives in
:mod:`yolokit.train.launch`, their device choice in :mod:`yolokit.train.distributed`).
"""

from __future__ import annotations

import os

from yolokit.errors import ConfigError

__all__ = ["get_rank", "get_local_rank", "get_world_size", "is_main_process", "parse_device_list",
           "check_device_list", "requested_processes"]


def get_rank() -> int:
    """Global rank of this process (0 when not launched by torchrun)."""
    return int(os.environ.get("RANK", "0"))


def get_local_rank() -> int:
    """Rank of this process on its node (0 when not launched by torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def get_world_size() -> int:
    """Number of processes taking part (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True on the process that owns files, logs and progress bars."""
    return get_rank() == 0


def parse_device_list(device: str) -> list[int] | None:
    """``"0,1,3"`` (or ``"cuda:0,cuda:1"``) -> ``[0, 1, 3]``; ``None`` for one device (``""``, ``"cpu"``, ``"0"``)."""
    text = str(device).strip().lower()
    if "," not in text:
        return None
    return [int(part.strip().removeprefix("cuda:")) for part in text.split(",")]


def check_device_list(key: str, value: str) -> str:
    """A list of distinct GPU indices as ``"0,1,..."``.

    Raises:
        ConfigError: a part is not a GPU index (``cuda:N`` or ``N``), or an index repeats.
    """
    try:
        indices = parse_device_list(value)
    except ValueError:
        indices = None
    if not indices or any(i < 0 for i in indices) or len(set(indices)) != len(indices):
        raise ConfigError(f"{key}={value!r}: a device list holds distinct GPU indices, e.g. {key}=0,1 (one training "
                          f"process per GPU); for several CPU processes pass {key}=cpu nproc=N")
    return ",".join(map(str, indices))


def requested_processes(device: str, nproc: int) -> int:
    """The processes a run asks for: ``nproc`` when set, else one per GPU of ``device=0,1,...``, else 1."""
    if nproc:
        return int(nproc)
    indices = parse_device_list(device)
    return len(indices) if indices is not None else 1
