"""torch's CPU thread count of a training run: chosen once at its start, recorded, reused by a resume.

    config = choose_train_threads(config)     # config.threads: the count; logs "threads: 1 of 2 cores (1 busy)"

``threads=N`` is used as given; so is a count the process already has from ``OMP_NUM_THREADS`` or from
``torch.set_num_threads`` below the physical cores (:func:`yolokit.utils.threads.user_torch_threads`). Otherwise
(``threads=None``, the default) the run takes the physical cores that other processes leave free at its start
(:func:`yolokit.utils.threads.session_threads`: ``/proc/stat`` probed for :data:`PROBE_S` seconds, at least 1):
on a 2-core machine where another process keeps a core busy, a run with 2 threads waits at every kernel for the
thread that was taken off its core (10-15x slower, benchmarks/README.md), one with 1 thread does not.

The count is fixed for the whole run: on the CPU, the floating-point sums of the convolutions' backward pass depend
on it (2 epochs of a tiny model with 1 and with 2 threads end with different weights), so a count that followed the
load from epoch to epoch would make a run depend on what else ran, and a resume would not be bit-identical. The
chosen count goes into ``config.threads`` (``args.yaml``, the training state, the weights' ``train_args``) but not
into ``config.given``, so a resume reads it from the state and never probes again.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, TypeVar

from yolokit.train.config import TrainConfig
from yolokit.utils import threads as thread_utils
from yolokit.utils.dist import get_world_size

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["choose_train_threads", "loader_workers", "PROBE_S"]

logger = logging.getLogger(__name__)
PROBE_S = 0.5  # seconds of /proc/stat sampling behind an adaptive choice (the run keeps it to its end)

C = TypeVar("C", bound=TrainConfig)


def _count(config: TrainConfig, probe_s: float) -> tuple[int, str]:
    """``(count, the log line's text)`` for ``config`` (its own ``threads`` when set)."""
    if config.threads is not None:
        how = f"threads={config.threads}" if "threads" in config.given else "the run's recorded count"
        return config.threads, f"{config.threads} ({how})"
    given = thread_utils.user_torch_threads()
    if given is None and get_world_size() > 1:
        import torch  # a rank of a distributed run: every rank keeps the launcher's count (no per-rank probe)

        given = torch.get_num_threads(), "one rank of a distributed run"
    if given is not None:
        return given[0], f"{given[0]} ({given[1]})"
    cores = thread_utils.physical_cores()
    plan = thread_utils.session_threads(None, probe_s)
    busy = round(plan.busy or 0.0, 1)
    return plan.count, f"{plan.count} of {cores} cores ({busy:g} busy)"


def choose_train_threads(config: C, probe_s: float = PROBE_S) -> C:
    """``config`` with ``threads`` set to the run's torch thread count (the same object when already set).

    Logs one line: ``threads: 1 of 2 cores (1 busy)`` for an adaptive choice, ``threads: 2 (threads=2)``,
    ``threads: 1 (OMP_NUM_THREADS=1)`` or ``threads: 1 (the run's recorded count)`` otherwise. ``given`` is kept:
    an adaptive count is recorded, not a key the user set.
    """
    count, text = _count(config, probe_s)
    logger.info("threads: %s", text)
    if config.threads == count:
        return config
    return type(config).restore({**config.to_dict(), "threads": count}, config.given)


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def loader_workers(config: TrainConfig, device: torch.device) -> int:
    """Data-loading processes: ``workers`` when given (capped at the CPUs); by default, on the CPU, only the CPUs that
    torch's compute threads (``config.threads`` when set, else torch's current count) and other processes (a 50 ms
    :func:`~yolokit.utils.threads.busy_cpus` probe; the count does not change the batches) leave free.

    On a CPU, loader processes running next to a compute thread on the same core stall torch's parallel regions
    (a thread taken off its core holds up the other at every operator): with 2 threads on 2 cores, 2 workers made
    the steps ~30% slower than loading in the training process (benchmarks/README.md).
    """
    cpus = _available_cpus()
    if "workers" in config.given or device.type != "cpu":
        return min(config.workers, cpus)
    import torch

    threads = config.threads or torch.get_num_threads()
    busy = round(thread_utils.busy_cpus()) if cpus > threads and config.workers > 0 else 0
    workers = max(0, min(config.workers, cpus - threads - busy))
    if workers < min(config.workers, cpus):
        logger.info("workers=%d: torch computes with %d thread%s on %d CPUs (%d busy with other work), so images "
                    "load in the training process (workers= overrides)", workers, threads, "s"[:threads > 1], cpus,
                    busy)
    return workers
