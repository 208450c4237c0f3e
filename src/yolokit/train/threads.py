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
from typing import TypeVar

from yolokit.train.config import TrainConfig
from yolokit.utils import threads as thread_utils

__all__ = ["choose_train_threads", "PROBE_S"]

logger = logging.getLogger(__name__)
PROBE_S = 0.5  # seconds of /proc/stat sampling behind an adaptive choice (the run keeps it to its end)

C = TypeVar("C", bound=TrainConfig)


def _count(config: TrainConfig, probe_s: float) -> tuple[int, str]:
    """``(count, the log line's text)`` for ``config`` (its own ``threads`` when set)."""
    if config.threads is not None:
        how = f"threads={config.threads}" if "threads" in config.given else "the run's recorded count"
        return config.threads, f"{config.threads} ({how})"
    given = thread_utils.user_torch_threads()
    if given is None and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
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
