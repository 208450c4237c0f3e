"""CPU thread counts for inference, chosen without touching process-wide state behind the caller's back.

- :func:`physical_cores`: cores usable by this process (affinity-aware; hyper-threads rarely help convolutions).
- :func:`check_num_threads`: validate a user's ``num_threads`` where it enters.
- :func:`resolve_threads`: the count for an engine that takes one per session (ONNX Runtime): ``num_threads`` if
  given, else ``OMP_NUM_THREADS`` when set, else :func:`physical_cores`.
- :func:`torch_threads`: a context manager that runs its block with torch's intra-op thread count set to
  ``num_threads`` and restores the previous count afterwards (``None``: leaves torch alone). torch's count is
  process-wide, so other threads running torch at the same time see the change for the block's duration.

Nothing here runs at import; torch is imported only inside :func:`torch_threads`.
"""

from __future__ import annotations

import contextlib
import operator
import os
from collections.abc import Iterator
from pathlib import Path

from yolokit.errors import ConfigError

__all__ = ["physical_cores", "check_num_threads", "resolve_threads", "torch_threads"]


def _threads_per_core() -> int:
    """Hardware threads per physical core from Linux sysfs (1 when unknown)."""
    siblings = Path("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list")
    try:
        text = siblings.read_text().strip()
    except OSError:
        return 1
    count = 0
    for part in text.split(","):
        low, _, high = part.partition("-")
        count += int(high) - int(low) + 1 if high else 1
    return max(count, 1)


def physical_cores() -> int:
    """Physical cores usable by this process: CPUs in its affinity mask divided by threads per core (>= 1)."""
    try:
        logical = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        logical = os.cpu_count() or 1
    return max(logical // _threads_per_core(), 1)


def check_num_threads(num_threads: int | None) -> int | None:
    """``num_threads`` as an int (``None`` passes through).

    Raises:
        ConfigError: ``num_threads`` is not an integer >= 1.
    """
    if num_threads is None:
        return None
    try:
        count = operator.index(num_threads)  # int-like (numpy ints too), never a float or a string
    except TypeError:
        count = 0
    if isinstance(num_threads, bool) or count < 1:
        raise ConfigError(f"num_threads must be >= 1 (an integer), got {num_threads!r}: pass e.g. num_threads=4")
    return count


def resolve_threads(num_threads: int | None = None) -> int:
    """Threads for one engine session: ``num_threads``, else ``OMP_NUM_THREADS`` when set, else physical cores."""
    checked = check_num_threads(num_threads)
    if checked is not None:
        return checked
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return int(env)
    return physical_cores()


@contextlib.contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(num_threads)``, then restore the count found on entry.

    ``None``, or a count equal to the current one, changes nothing (no cost: torch clears oneDNN's primitive cache
    whenever its thread count is set, so the set-and-restore is skipped when it is not needed).
    """
    num_threads = check_num_threads(num_threads)
    if num_threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    if before == num_threads:
        yield
        return
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
