"""Deterministic, resumable data loading: :class:`ResumableSampler`, :class:`TrainLoader`, :func:`build_dataloader`.

Determinism: the sampler's permutation is a function of ``(seed, epoch)`` only, and a :class:`TrainDataset` sample of
``(seed, epoch, index)`` only, so batches are bit-identical for any number of workers and a resumed run replays them.
The loader hands the epoch to the dataset at the start of every pass over it. Worker processes live for the whole
run (``persistent_workers=True``: forking the trainer once per epoch slowed its steps by up to 40%); a dataset with
:class:`~yolokit.data.sample_state.EpochState` gets ``(index, state)`` keys, ``state`` taken in the main process at
the start of each pass (epoch, seed, mosaic switch), so a worker's copy makes the sample the main process would.
A dataset without it gets plain indices and fresh workers each pass (``persistent_workers=False``).

Resume: ``loader.state_dict()`` records ``(seed, epoch, start_index)`` where ``start_index`` counts the samples of
this rank's share already handed to the caller; after ``loader.load_state_dict(state)`` the next pass starts at that
sample (a multiple of the batch size, so the remaining batches equal those of an uninterrupted run).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from yolokit.data.sample_state import EpochState
from yolokit.errors import ConfigError

__all__ = ["KeyedSampler", "ResumableSampler", "TrainLoader", "WorkerSeeder", "build_dataloader",
           "build_val_dataloader", "derive_seed"]

logger = logging.getLogger(__name__)


def derive_seed(*values: int) -> int:
    """A 63-bit seed mixed from integers (``np.random.SeedSequence``): distinct tuples give unrelated seeds."""
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(1, np.uint64)[0] >> np.uint64(1))


class ResumableSampler(Sampler[int]):
    """Indices of one epoch for one rank: a permutation from ``(seed, epoch)``, split across ranks, resumable.

    Like ``DistributedSampler``: the (shuffled) index list is padded with its own first indices to a multiple of
    ``world_size`` (or truncated with ``drop_last``) and rank ``r`` takes every ``world_size``-th index from ``r``.
    ``start_index`` skips the first samples of this rank's share in the next pass only (mid-epoch resume); a
    full pass, or ``set_epoch`` to another epoch, resets it to 0.

    Example: 10 images, ``world_size=4``, no shuffle -> padded ``0..9, 0, 1``; rank 1 yields ``1, 5, 9``.
    """

    def __init__(self, num_images: int, shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False) -> None:
        if num_images < 1:
            raise ConfigError(f"a sampler needs at least one image, got {num_images}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"need 0 <= rank < world_size, got rank={rank} world_size={world_size}")
        if drop_last and num_images < world_size:
            raise ConfigError(f"drop_last with {num_images} images leaves nothing for {world_size} ranks")
        self.num_images, self.shuffle, self.seed = int(num_images), bool(shuffle), int(seed)
        self.rank, self.world_size, self.drop_last = int(rank), int(world_size), bool(drop_last)
        per_rank = num_images / world_size
        self.num_samples = math.floor(per_rank) if drop_last else math.ceil(per_rank)
        self.epoch = 0
        self.start_index = 0

    def set_epoch(self, epoch: int) -> None:
        epoch = int(epoch)
        if epoch != self.epoch:
            self.start_index = 0
        self.epoch = epoch

    def indices(self, epoch: int | None = None) -> list[int]:
        """This rank's full index list of ``epoch`` (default: the current one)."""
        epoch = self.epoch if epoch is None else int(epoch)
        if self.shuffle:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
            order = torch.randperm(self.num_images, generator=generator).tolist()
        else:
            order = list(range(self.num_images))
        total = self.num_samples * self.world_size
        while len(order) < total:
            order += order[:total - len(order)]
        return order[:total][self.rank::self.world_size]

    def __iter__(self) -> Iterator[int]:
        start, self.start_index = self.start_index, 0
        return iter(self.indices()[start:])

    def __len__(self) -> int:
        return max(self.num_samples - self.start_index, 0)

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "epoch": self.epoch, "start_index": self.start_index,
                "num_images": self.num_images, "world_size": self.world_size, "num_samples": self.num_samples}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``epoch`` and ``start_index``; the seed and image count must match.

        Another world size is accepted at an epoch boundary (the saved pass complete: what a training state holds):
        the next epoch is split over the new number of ranks. A mid-epoch state needs the same world size.
        """
        for key in ("seed", "num_images"):
            if key in state and int(state[key]) != getattr(self, key):
                raise ConfigError(f"sampler state has {key}={state[key]} but this run has {getattr(self, key)}; "
                                  f"resume with the same data and seed")
        saved_world = int(state.get("world_size", self.world_size))
        if saved_world != self.world_size:
            saved_samples = int(state.get("num_samples", math.ceil(self.num_images / saved_world)))
            if int(state.get("start_index", 0)) < saved_samples:
                raise ConfigError(f"sampler state is mid-epoch with world_size={saved_world} but this run has "
                                  f"{self.world_size} processes; resume it with {saved_world} processes")
            self.epoch, self.start_index = int(state["epoch"]), self.num_samples  # the pass is complete
            return
        start = int(state.get("start_index", 0))
        if not 0 <= start <= self.num_samples:
            raise ConfigError(f"sampler state start_index={start} is outside 0..{self.num_samples}")
        self.epoch, self.start_index = int(state["epoch"]), start


class WorkerSeeder:
    """``worker_init_fn``: seeds ``random``, ``numpy`` and ``torch`` of worker ``w`` from ``(seed, epoch, w)``.

    Runs once per worker process (workers persist across epochs for :class:`EpochState` datasets; ``epoch`` is the
    one the process was started in). The augmentations draw from their own per-sample generators; this only makes
    any other use of the global generators in a worker reproducible. (OpenCV's thread count is left alone:
    ``cv2.setNumThreads`` in a forked worker can deadlock on the thread pool inherited from the parent.)"""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def __call__(self, worker_id: int) -> None:
        info = torch.utils.data.get_worker_info()
        epoch = int(getattr(info.dataset, "epoch", 0)) if info is not None else 0
        seed = derive_seed(self.seed, epoch, worker_id)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)


class KeyedSampler(Sampler):
    """Yields ``(index, dataset.sample_state())`` for each index of ``sampler``, the state read once per pass."""

    def __init__(self, sampler: ResumableSampler, dataset: Any) -> None:
        self.sampler, self.dataset = sampler, dataset

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]:
        state = self.dataset.sample_state()
        return ((index, state) for index in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class TrainLoader(DataLoader):
    """A ``DataLoader`` over a :class:`ResumableSampler` that syncs the dataset's epoch and counts what it yielded.

    ``set_epoch(e)`` before each epoch; ``state_dict()`` / ``load_state_dict()`` for exact (mid-epoch) resume.
    ``index_sampler`` is the :class:`ResumableSampler` (``sampler`` may be the :class:`KeyedSampler` around it).
    """

    @property
    def index_sampler(self) -> ResumableSampler:
        sampler = self.sampler
        return sampler.sampler if isinstance(sampler, KeyedSampler) else sampler

    def set_epoch(self, epoch: int) -> None:
        self.index_sampler.set_epoch(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return self.index_sampler.epoch

    def __iter__(self) -> Iterator[Any]:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.index_sampler.epoch)  # read by the KeyedSampler / fresh workers of this pass
        self._position = self.index_sampler.start_index
        for batch in super().__iter__():
            self._position += self.batch_size if self.batch_size else len(batch)
            self._position = min(self._position, self.index_sampler.num_samples)
            yield batch

    def state_dict(self) -> dict[str, int]:
        """Sampler state with ``start_index`` = samples of this epoch already yielded (during or after a pass)."""
        state = self.index_sampler.state_dict()
        if hasattr(self, "_position"):
            state["start_index"] = self._position
        return state

    def close(self) -> None:
        """Stop the worker processes now (persistent workers otherwise live as long as the loader)."""
        self._iterator = None  # its __del__ shuts the workers down

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.index_sampler.load_state_dict(state)
        self._position = self.index_sampler.start_index
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.index_sampler.epoch)


def build_dataloader(dataset: Any, batch: int, workers: int, shuffle: bool, seed: int, rank: int = 0,
                     world_size: int = 1, drop_last: bool = False) -> TrainLoader:
    """A :class:`TrainLoader` of ``batch``-sized batches (``dataset.collate_fn``) in ``workers`` processes.

    ``seed`` seeds the permutation, the dataset's augmentation (``dataset.set_seed``) and the workers. ``drop_last``
    drops an incomplete last batch. Memory is pinned only when CUDA is available. A rect dataset keeps its order
    (a warning when ``shuffle`` is asked) and needs ``batch == dataset.batch_size``.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"batch must be a positive integer, got {batch!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"workers must be an integer >= 0, got {workers!r}")
    if getattr(dataset, "rect", False):
        if batch != dataset.batch_size:
            raise ConfigError(f"rect batches were planned for batch={dataset.batch_size}, got batch={batch}; build "
                              f"the dataset with batch_size={batch}")
        if shuffle:
            logger.warning("rect=True keeps images in aspect-ratio order: shuffle=True ignored")
            shuffle = False
    if hasattr(dataset, "set_seed"):
        dataset.set_seed(seed)
    sampler = ResumableSampler(len(dataset), shuffle=shuffle, seed=seed, rank=rank, world_size=world_size)
    keyed = bool(workers) and isinstance(dataset, EpochState)
    return TrainLoader(
        dataset, batch_size=batch, sampler=KeyedSampler(sampler, dataset) if keyed else sampler, num_workers=workers,
        drop_last=drop_last, collate_fn=getattr(dataset, "collate_fn", None), pin_memory=torch.cuda.is_available(),
        worker_init_fn=WorkerSeeder(seed) if workers else None, persistent_workers=keyed,
        generator=torch.Generator().manual_seed(derive_seed(seed, 1)),  # never draws from torch's global RNG
        prefetch_factor=2 if workers else None,
    )


def build_val_dataloader(dataset: Any, batch: int, workers: int = 0) -> TrainLoader:
    """The validation loader: every image once, in dataset order (a rect dataset's batches stay whole)."""
    if getattr(dataset, "augment", False):
        raise ConfigError("the validation loader needs a dataset built with augment=False")
    return build_dataloader(dataset, batch, workers, shuffle=False, seed=0)
