"""CPU thread counts for inference, chosen without touching process-wide state behind the caller's back.

- :func:`physical_cores`: cores usable by this process (affinity-aware; hyper-threads rarely help convolutions).
- :func:`check_num_threads`: validate a user's ``num_threads`` where it enters.
- :func:`resolve_threads`: the count for an engine that takes one per session (ONNX Runtime): ``num_threads`` if
  given, else ``OMP_NUM_THREADS`` when set, else :func:`physical_cores`.
- :func:`session_threads`: the :class:`ThreadPlan` (count, spinning) of an inference session created without a
  count: the physical cores other processes leave free, spinning only on an otherwise idle machine
  (:func:`busy_cpus` probes ``/proc/stat`` for 50 ms).
- :func:`user_torch_threads`: the torch count someone already chose (``num_threads``, ``OMP_NUM_THREADS``, or
  ``torch.set_num_threads`` below the physical cores), or None: the count a training run then picks itself
  (:mod:`yolokit.train.threads`, with :func:`session_threads`).
- :func:`torch_threads`: a context manager that runs its block with torch's intra-op thread count set to
  ``num_threads`` and restores the previous count afterwards (``None``: leaves torch alone). torch's count is
  process-wide, so other threads running torch at the same time see the change for the block's duration.

Nothing here runs at import; torch is imported only inside :func:`torch_threads`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import operator
import os
import time
from collections.abc import Iterator
from pathlib import Path

from yolokit.errors import ConfigError

__all__ = ["physical_cores", "check_num_threads", "resolve_threads", "torch_threads", "ThreadPlan", "busy_cpus",
           "session_threads", "user_torch_threads"]


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


def _omp_num_threads() -> str:
    """``OMP_NUM_THREADS`` when it holds a count >= 1, else ''."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    return env if env.isdigit() and int(env) >= 1 else ""


def resolve_threads(num_threads: int | None = None) -> int:
    """Threads for one engine session: ``num_threads``, else ``OMP_NUM_THREADS`` when set, else physical cores."""
    checked = check_num_threads(num_threads)
    if checked is not None:
        return checked
    env = _omp_num_threads()
    return int(env) if env else physical_cores()


@dataclasses.dataclass(frozen=True)
class ThreadPlan:
    """Threads of one inference session: ``count`` intra-op threads; ``spin``: its workers may spin-wait between
    the kernels of a run (lower latency on an idle machine, lost time on a shared one); ``busy``: the physical
    cores other processes kept busy when the count was chosen (None: not probed, the count was given)."""

    count: int
    spin: bool = True
    busy: float | None = None


def _cpu_times(cpus: set[int]) -> dict[int, tuple[int, int]]:
    """``cpu -> (busy, total)`` jiffies of the given CPUs from ``/proc/stat`` ({} when unreadable)."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus and len(fields) >= 4:
            values = [int(v) for v in fields[:8]]
            idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
            out[int(name[3:])] = (sum(values) - idle, sum(values))
    return out


def busy_cpus(probe_s: float = 0.05) -> float:
    """How many of this process's CPUs other work keeps busy (0.0 .. CPUs), measured over ``probe_s`` seconds
    while this thread sleeps; 0.0 where ``/proc/stat`` is not available."""
    try:
        cpus = set(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return 0.0
    before = _cpu_times(cpus)
    time.sleep(probe_s)
    after = _cpu_times(cpus)
    busy = 0.0
    for cpu, (busy_after, total_after) in after.items():
        busy_before, total_before = before.get(cpu, (busy_after, total_after))
        if total_after > total_before:
            busy += (busy_after - busy_before) / (total_after - total_before)
    return busy


def session_threads(num_threads: int | None = None, probe_s: float = 0.05) -> ThreadPlan:
    """The threads of an inference session (ONNX Runtime), chosen when it is created.

    ``num_threads`` or ``OMP_NUM_THREADS`` set: that count, spinning (the user sized it). Otherwise the physical
    cores minus the cores other processes keep busy (:func:`busy_cpus`; rounded, at least 1), spinning only when
    nothing else runs: on a shared core a spinning worker takes time from the process that needs it, and a session
    whose threads outnumber the free cores waits at every kernel for the one that was descheduled.
    """
    checked = check_num_threads(num_threads)
    if checked is not None or _omp_num_threads():
        return ThreadPlan(resolve_threads(checked))
    cores = physical_cores()
    busy = busy_cpus(probe_s) / _threads_per_core()
    return ThreadPlan(max(1, min(cores, int(cores - busy + 0.5))), spin=busy < 0.25, busy=busy)


def user_torch_threads(num_threads: int | None = None) -> tuple[int, str] | None:
    """The torch intra-op thread count someone already chose, and how -> ``(count, how)``; None when nobody did.

    ``num_threads`` given: ``(num_threads, "threads=N")``. ``OMP_NUM_THREADS`` set (a launcher such as torchrun
    sized the process): torch's current count. torch's current count below :func:`physical_cores` (torch starts
    with one thread per physical core, so a lower count was set with ``torch.set_num_threads``): that count.
    Imports torch unless ``num_threads`` is given.
    """
    checked = check_num_threads(num_threads)
    if checked is not None:
        return checked, f"threads={checked}"
    import torch

    current = torch.get_num_threads()
    env = _omp_num_threads()
    if env:
        return current, f"OMP_NUM_THREADS={env}"
    if current < physical_cores():
        return current, "set with torch.set_num_threads"
    return None


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
