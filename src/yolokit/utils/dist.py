"""Rank awareness for ``torch.distributed`` / ``torchrun``, read from the environment (no torch import).

Only the main process (global rank 0) writes files, prints progress bars or logs summaries. Code that writes to
disk asks :func:`is_main_process` first, so multi-process runs never race on the same file.
"""

from __future__ import annotations

import os


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
