"""What a sample depends on besides its index, handed to worker processes with every index.

Training loaders keep their worker processes for the whole run (``persistent_workers=True``: forking the trainer's
process once per epoch costs it up to 40% of its speed on a 2-core machine, ``benchmarks/train.py``). A worker's
copy of the dataset therefore never sees ``set_epoch`` or the mosaic switch made in the main process; instead the
loader's sampler yields ``(index, state)`` keys, where ``state`` is :meth:`EpochState.sample_state` taken in the main
process at the start of each pass, and the dataset applies it before it makes the sample. Plain ``int`` indices
keep working (``dataset[i]`` in the main process uses its own state).
"""

from __future__ import annotations

from typing import Any

__all__ = ["EpochState"]


class EpochState:
    """Mixin for datasets whose samples are a function of ``(seed, epoch, index)`` (and their own extra switches).

    Subclasses set ``seed`` and ``epoch``; :meth:`sample_state` / :meth:`load_sample_state` may add more keys.
    """

    seed: int
    epoch: int

    def sample_state(self) -> dict[str, Any]:
        """The small, picklable state that decides what ``dataset[i]`` returns."""
        return {"seed": self.seed, "epoch": self.epoch}

    def load_sample_state(self, state: dict[str, Any]) -> None:
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])

    def resolve_key(self, key: Any) -> int:
        """``index`` or ``(index, state)`` (from a keyed sampler) -> the index, with ``state`` applied first."""
        if isinstance(key, tuple):
            index, state = key
            if state != self.sample_state():
                self.load_sample_state(state)
            return int(index)
        return int(key)
