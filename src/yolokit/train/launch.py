"""Starting the local training processes of ``yolokit train device=0,1`` / ``nproc=N`` through torchrun's launcher.

    yolokit train model=yolo26n.yaml data=data.yaml device=0,1      # starts the 2 workers through torchrun itself

Each worker runs ``python -m yolokit train`` with the same words and trains under
:func:`yolokit.train.distributed.distributed_session` (docs/distributed.md).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from yolokit.errors import ConfigError
from yolokit.train.distributed import DistributedError
from yolokit.utils.dist import get_world_size, requested_processes

__all__ = ["processes_to_launch", "launch_local"]

logger = logging.getLogger(__name__)


def processes_to_launch(values: Mapping[str, Any]) -> int:
    """How many local workers ``yolokit train`` must start (0: train in this process): ``nproc=N`` or the GPUs of
    ``device=0,1,...``; always 0 inside a torchrun worker (``WORLD_SIZE`` / ``TORCHELASTIC_RUN_ID`` set)."""
    if get_world_size() > 1 or "TORCHELASTIC_RUN_ID" in os.environ:
        return 0
    try:
        nproc = int(values.get("nproc", 0) or 0)
    except (TypeError, ValueError):
        raise ConfigError(f"nproc must be an integer >= 0, got {values.get('nproc')!r}: pass e.g. nproc=2") from None
    wanted = requested_processes(str(values.get("device", "")), nproc)
    return wanted if wanted > 1 else 0


def launch_local(args: Sequence[str], nproc: int) -> int:
    """Start ``nproc`` workers of ``python -m yolokit train ARGS`` on this machine through torchrun's own launcher
    (``torch.distributed.run``: ``--standalone``, a rendezvous on a free localhost port) and wait for them -> 0.

    Raises:
        DistributedError: a worker failed (its rank and exit code; the workers printed their own lines).
    """
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    argv = ["--standalone", f"--nproc-per-node={nproc}", "--module", "yolokit", "train", *args]
    logger.info("Starting %d training processes: torchrun %s", nproc, " ".join(argv))
    try:
        torchrun.run(torchrun.get_args_parser().parse_args(argv))
    except ChildFailedError as error:
        rank, failure = error.get_first_failure()
        raise DistributedError(f"training worker rank {rank} of {nproc} failed first (exit code {failure.exitcode}); "
                               "the lines above say why") from None
    return 0
