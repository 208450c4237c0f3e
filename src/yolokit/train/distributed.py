"""Distributed data-parallel training on ``torch.distributed`` (DDP), launched by ``torchrun``.

    torchrun --standalone --nproc_per_node=2 -m yolokit train model=yolo26n.yaml data=data.yaml device=cpu
    yolokit train model=yolo26n.yaml data=data.yaml device=0,1      # starts the 2 workers (train/launch.py)

Semantics (docs/distributed.md):

- ``batch`` is the **global** batch: each of the ``W`` processes loads ``batch / W`` images per step (``batch`` must
  be a multiple of ``W``). The :class:`~yolokit.data.loader.ResumableSampler` permutes by ``(seed, epoch)`` and
  rank ``r`` takes every ``W``-th index from ``r``, so step ``k`` of the run sees the same global samples for any
  ``W``. Gradient accumulation (``nbs``), weight decay scaling and the schedule are computed on the global batch.
- A loss that sums over the batch (detection's ``loss * batch``) is multiplied by ``W`` before backward: DDP
  averages gradients, so the step gets the sum over the global batch, as one process would. Between optimizer
  steps (and at an epoch's last batch) DDP syncs; the other backwards run under ``no_sync``.
- The EMA follows on every rank (cheap, and every rank can return a model); rank 0 alone validates, saves, plots,
  logs and shows progress bars. The epoch's loss means and the early-stop decision are all-reduced once per epoch
  (:class:`DistributedSyncHook`), a collective every rank reaches: the others wait there (within ``dist_timeout``)
  while rank 0 validates, and no rank ever waits in a collective another rank skips.
- gloo on the CPU, NCCL on CUDA (``cuda:LOCAL_RANK``, or the ``LOCAL_RANK``-th index of ``device=0,1,...``).
  ``sync_bn=True``: BatchNorm statistics over the global batch (torch's ``SyncBatchNorm``, CUDA only).
- Failure: every collective times out after ``dist_timeout`` seconds (default 600). When a collective fails or
  torchrun's agent stops this process (SIGTERM, after another worker died), each surviving rank reports to the
  rendezvous store, waits a few seconds for the others' reports and raises :class:`DistributedError`: one line
  naming the rank(s) that died or stalled (no report) and this rank's epoch and iteration.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from yolokit.errors import ConfigError, YolokitError
from yolokit.train.hooks import HookBase
from yolokit.utils.dist import get_local_rank, get_world_size, parse_device_list, requested_processes

__all__ = ["DistContext", "DistributedError", "DistributedSyncHook", "DistributedSession", "distributed_session",
           "current_context", "rank_device", "wrap_model", "gradient_sync", "broadcast_from_main",
           "REPORT_GRACE"]

logger = logging.getLogger(__name__)
REPORT_GRACE = 5.0  # seconds a failing rank waits for the other ranks' reports before naming the silent ones


class DistributedError(YolokitError):
    """A distributed run stopped: another rank died or stalled, or the launcher ended this process."""


class _Stopped(BaseException):
    """Raised in the main thread by the SIGTERM handler (torchrun's agent stopping the worker group)."""


@dataclasses.dataclass(frozen=True)
class DistContext:
    """Where this process sits in the run: global ``rank``, ``local_rank`` on its node, ``world_size``, ``device``."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local_batch(self, batch: int) -> int:
        """This rank's share of the global ``batch`` (``batch`` is a multiple of ``world_size``, checked on entry)."""
        return batch // self.world_size


def rank_device(device: str, local_rank: int = 0, world_size: int = 1) -> torch.device:
    """The device of the process ``local_rank``: ``""`` -> ``cuda:LOCAL_RANK`` when CUDA is present, else the CPU;
    ``"cuda"`` -> ``cuda:LOCAL_RANK``; ``"0,1,..."`` -> the ``local_rank``-th listed GPU; anything else as named.

    Raises:
        ConfigError: one GPU (``cuda:N``) named for several processes, or fewer listed GPUs than local processes.
    """
    indices = parse_device_list(device)
    if indices is not None:
        if local_rank >= len(indices):
            raise ConfigError(f"device={device} lists {len(indices)} GPUs, but this is local process {local_rank}: "
                              "list one GPU per process on the node")
        return torch.device(f"cuda:{indices[local_rank]}")
    if not device:
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        return torch.device(f"cuda:{local_rank}")
    if world_size > 1 and device.startswith("cuda:"):
        raise ConfigError(f"device={device} names one GPU for {world_size} processes: pass device=cuda (each process "
                          "takes cuda:LOCAL_RANK) or list the GPUs, e.g. device=0,1")
    return torch.device(device)


def current_context(config: Any) -> DistContext:
    """The :class:`DistContext` of this process (``torch.distributed`` initialised: its rank and world size)."""
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        rank, world = 0, 1
    local = get_local_rank() if world > 1 else 0
    return DistContext(rank, local, world, rank_device(str(config.device), local, world))


def _check_settings(config: Any, world: int, device: torch.device) -> None:
    """The settings a ``world``-process run needs (one line each, before anything is built)."""
    if config.batch % world:
        raise ConfigError(f"batch={config.batch} is the global batch and must split evenly over {world} processes: "
                          f"pass a multiple of {world}, e.g. batch={max(1, round(config.batch / world)) * world}")
    if getattr(config, "sync_bn", False) and device.type != "cuda":
        raise ConfigError("sync_bn=True needs CUDA devices (torch's SyncBatchNorm does not run on the CPU): drop "
                          "sync_bn= for a CPU run")


def _backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def wrap_model(model: nn.Module, context: DistContext, sync_bn: bool = False) -> nn.Module:
    """``model`` itself for one process; else ``DistributedDataParallel(model)`` (``model`` stays the module whose
    ``state_dict`` has no ``module.`` prefix), its BatchNorm layers made ``SyncBatchNorm`` first with ``sync_bn``.

    The conversion happens in place and keeps the same parameter and buffer objects (the optimizer and the EMA,
    built before, are unaffected; the EMA copy keeps plain BatchNorm)."""
    if not context.enabled:
        return model
    if sync_bn:
        converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        assert converted is model, "a model whose root is a BatchNorm layer"
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)  # buffers: rank 0's, each forward


def gradient_sync(model: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """DDP's ``no_sync()`` when ``sync`` is False (gradients summed locally until the next synced backward)."""
    if sync or not isinstance(model, nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return model.no_sync()


def broadcast_from_main(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (a picklable object; unchanged without ``torch.distributed``)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class DistributedSyncHook(HookBase):
    """After an epoch (after validation and early stopping, before the results row): the epoch's mean loss items
    averaged over the ranks (what the log and ``results.csv`` show) and ``stop`` if any rank (rank 0's early stop)
    set it. One ``all_reduce`` that every rank reaches."""

    def after_epoch(self) -> None:
        t = self.trainer
        count = len(t.loss_names)
        loss = t.loss_mean if t.loss_mean is not None else torch.zeros(count)
        values = torch.cat([loss.float().reshape(count), torch.tensor([float(t.stop)])]).to(t.device)
        dist.all_reduce(values)
        values = values.cpu()
        t.loss_mean = values[:count] / t.dist.world_size
        t.stop = bool(values[count] > 0)


# --- the session: process group, failure reports ---------------------------------------------------------------------
class DistributedSession:
    """The process group of a run, and the reports that name a dead or stalled rank (see :meth:`guard`)."""

    def __init__(self, context: DistContext, store: Any = None, timeout: float = 600.0) -> None:
        self.context, self.timeout = context, float(timeout)
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        self.store = dist.PrefixStore(f"yolokit/{attempt}/", store) if store is not None else None
        self.reporting = False

    @contextlib.contextmanager
    def guard(self, trainer: Any) -> Iterator[None]:
        """Run the training loop; a failed collective (or torchrun's SIGTERM) becomes one :class:`DistributedError`
        line. Any other error is reported to the other ranks (so they can name it) and raised unchanged."""
        try:
            yield
        except BaseException as error:  # noqa: BLE001 - re-raised, or replaced by the one-line report
            if not self.context.enabled:
                raise
            if not _is_collective_failure(error):
                self._report(trainer, error)
                raise
            raise DistributedError(self.failure_line(trainer, error)) from None

    def _report(self, trainer: Any, error: BaseException) -> None:
        if self.store is None:
            return
        text = json.dumps({"iteration": int(trainer.iteration), "error": _short(error),
                           "collective": _is_collective_failure(error)})
        with contextlib.suppress(Exception):  # the store's host may be gone too: nothing to tell then
            self.store.set(f"failed/{self.context.rank}", text)

    def _reports(self, grace: float) -> dict[int, dict[str, Any]] | None:
        """The other ranks' reports within ``grace`` seconds (None: the store cannot be reached)."""
        others = [r for r in range(self.context.world_size) if r != self.context.rank]
        reports: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + grace
        try:
            while True:
                for rank in others:
                    if rank not in reports and self.store.check([f"failed/{rank}"]):
                        reports[rank] = json.loads(self.store.get(f"failed/{rank}"))
                if len(reports) == len(others) or time.monotonic() > deadline:
                    return reports
                time.sleep(0.1)
        except Exception:  # noqa: BLE001 - an unreachable store is part of the answer
            return None

    def failure_line(self, trainer: Any, error: BaseException) -> str:
        """``rank R stopped at epoch E/N, iteration I (batch B/M): <who failed>; <what this rank saw>; <what to do>``
        (this rank reports first, then waits up to ``REPORT_GRACE`` seconds for the others' reports)."""
        self.reporting = True
        self._report(trainer, error)
        t, ctx = trainer, self.context
        grace = min(REPORT_GRACE, self.timeout)
        reports = self._reports(grace) if self.store is not None else None
        if reports is None:
            culprit = "the other ranks could not be asked (the rendezvous store is unreachable: its host died?)"
        else:
            crashed = {r: v["error"] for r, v in reports.items() if not v["collective"]}
            silent = [r for r in range(ctx.world_size) if r != ctx.rank and r not in reports]
            if crashed:
                culprit = "; ".join(f"rank {r} failed ({text})" for r, text in sorted(crashed.items()))
            elif silent:
                culprit = (f"rank{'s' if len(silent) > 1 else ''} {', '.join(map(str, silent))} died or stalled "
                           f"(no report within {grace:g} s)")
            else:
                culprit = "every rank reported the failure (a network fault?)"
        if isinstance(error, _Stopped):
            seen = "torchrun stopped this worker (SIGTERM)"
        elif "timed out" in str(error).lower() or "timeout" in str(error).lower():
            seen = f"a collective timed out after dist_timeout={self.timeout:g} s"
        else:
            seen = f"a collective failed ({_short(error)})"
        return (f"rank {ctx.rank} stopped at epoch {t.epoch + 1}/{t.epochs}, iteration {t.iteration} (batch "
                f"{t.inner_iter + 1}/{t.batches_per_epoch}): {culprit}; {seen}; resume with resume={t.run_dir}")


def _is_collective_failure(error: BaseException) -> bool:
    """A failure of the process group (a peer gone, a timeout) or the launcher's stop, not a bug of this rank."""
    if isinstance(error, (_Stopped, dist.DistError)):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        mark in text for mark in ("gloo", "NCCL", "Connection closed by peer", "Connection reset", "Timed out"))


def _short(error: BaseException, limit: int = 160) -> str:
    """``Type: first sentence`` of an error, without gloo's ``[path/file.cc:N]`` prefix, one line."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if text.startswith("[") and "] " in text:
        text = text.split("] ", 1)[1]
    text = text.split(". ")[0]
    return f"{type(error).__name__}: {text}"[:limit]


@contextlib.contextmanager
def distributed_session(config: Any) -> Iterator[DistributedSession]:
    """The process group for a run launched by torchrun (``WORLD_SIZE > 1``): initialised from torchrun's variables
    (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) with ``dist_timeout``, destroyed at
    the end; non-main ranks log warnings only; SIGTERM becomes a one-line report. One process: nothing changes.
    A process group the caller initialised is used as it is (and left alone)."""
    world = get_world_size()
    owned = world > 1 and not (dist.is_available() and dist.is_initialized())
    timeout = float(getattr(config, "dist_timeout", 600.0))
    _check_launch(config, world)
    store = None
    if owned:
        local = get_local_rank()
        device = rank_device(str(config.device), local, world)
        _check_settings(config, world, device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        span = datetime.timedelta(seconds=timeout)
        store, rank, world = next(dist.rendezvous("env://", timeout=span))
        dist.init_process_group(_backend(device), store=store, rank=rank, world_size=world, timeout=span)
    elif dist.is_available() and dist.is_initialized():
        _check_settings(config, dist.get_world_size(), current_context(config).device)
    session = DistributedSession(current_context(config), store, timeout)
    with _quiet_unless_main(session.context), _sigterm_raises(session):
        if session.context.enabled:
            logger.info("DDP: %d processes (%s), batch %d = %d x %d per process, dist_timeout=%g s%s",
                        world, dist.get_backend(), config.batch, world, session.context.local_batch(config.batch),
                        timeout, ", SyncBatchNorm" if getattr(config, "sync_bn", False) else "")
        try:
            yield session
        except _Stopped:
            raise DistributedError(f"rank {session.context.rank} was stopped by torchrun (SIGTERM) outside the "
                                   "training loop: another worker failed; see torchrun's report") from None
        finally:
            if owned:
                dist.destroy_process_group()


def _check_launch(config: Any, world: int) -> None:
    """A single process asked for several (``device=0,1`` or ``nproc=N``): refused, with the way to start them."""
    wanted = requested_processes(str(config.device), int(getattr(config, "nproc", 0)))
    if world == 1 and wanted > 1:
        raise ConfigError(f"device={config.device} nproc={getattr(config, 'nproc', 0)} asks for {wanted} processes, "
                          f"but this one was not started by torchrun: run 'yolokit train ... ' (it launches them) or "
                          f"'torchrun --nproc_per_node={wanted} -m yolokit train ...'")


@contextlib.contextmanager
def _quiet_unless_main(context: DistContext) -> Iterator[None]:
    """yolokit's logs at WARNING on ranks other than 0 for the session (restored afterwards)."""
    root = logging.getLogger("yolokit")
    saved = root.level
    if context.enabled and not context.is_main:
        root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.setLevel(saved)


@contextlib.contextmanager
def _sigterm_raises(session: DistributedSession) -> Iterator[None]:
    """SIGTERM raises :class:`_Stopped` in the main thread (unless this rank is already reporting a failure)."""
    if not session.context.enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    owner = os.getpid()

    def handler(signum: int, frame: Any) -> None:
        if os.getpid() != owner:  # a forked loader worker inherited the handler: die as SIGTERM would
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        if not session.reporting:
            raise _Stopped()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
