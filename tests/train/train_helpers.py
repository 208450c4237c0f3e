"""Shared pieces of the trainer tests: tiny specs, a tiny dataset, state comparison, and a training child process.

Run as a script (``python train_helpers.py DATA PROJECT NAME key=value...``) it trains the tiny model once with one
torch thread, as the resume test's child process.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

# Five stride-2 convs (strides 8/16/32 at layers 2-4) and a head: ~0.2M parameters, fast on a CPU at imgsz 64.
_BACKBONE = [[-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [16, 3, 2]],
             [-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [16, 3, 2]]]
TINY_V8 = {"nc": 3, "scales": {"n": [1.0, 1.0, 1024]}, "scale": "n", "backbone": _BACKBONE,
           "head": [[[2, 3, 4], 1, "Detect", ["nc"]]]}
TINY_E2E = {**TINY_V8, "end2end": True, "reg_max": 1}  # YOLO26-style: one-to-one branch, no DFL

FAST = {"imgsz": 64, "batch": 4, "nbs": 8, "warmup_epochs": 1, "verbose": False, "plots": False}


def tiny_model(spec: dict | None = None) -> Any:
    from yolokit.models.builder import build_model

    model = build_model(dict(spec or TINY_V8))
    model.metadata = {}
    return model


def tiny_data(root: Path, n_train: int = 12, n_val: int = 4) -> Path:
    from yolokit.data.synth import make_synthetic_dataset

    return make_synthetic_dataset(root, n_train=n_train, n_val=n_val, imgsz=64, seed=0)


def train_tiny(data: Path, project: Path, name: str, spec: dict | None = None, **overrides: Any) -> tuple[Any, dict]:
    from yolokit.config import make_config
    from yolokit.train.api import train
    from yolokit.train.config import TrainConfig

    values = {**FAST, "data": str(data), "project": str(project), "name": name, "workers": 0, **overrides}
    return train(tiny_model(spec), make_config(TrainConfig, values))


def tensors_of(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor inside nested dicts / lists, keyed by its path."""
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else []
    out: dict[str, torch.Tensor] = {}
    for key, value in items:
        out.update(tensors_of(value, f"{prefix}/{key}"))
    return out


def run_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    """All tensors a run leaves: last/best weights and the training state (model, grads, optimizer, EMA)."""
    from yolokit.weights import read_weights

    out = {}
    for name in ("last", "best"):
        out.update(tensors_of(read_weights(run_dir / "weights" / f"{name}.safetensors").state_dict, name))
    state = torch.load(run_dir / "weights" / "last_state.pt", weights_only=True)
    for key in ("model", "grads", "optimizer", "ema"):
        out.update(tensors_of(state[key], f"state/{key}"))
    return out


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:5]}"


@contextmanager
def interrupted_after_epoch(epoch: int) -> Iterator[None]:
    """Training inside the block raises ``KeyboardInterrupt`` right after the checkpoint of ``epoch`` (0-based) is
    written, as a user stopping the run there would; the block expects it, and the hook is restored after."""
    from yolokit.train import output_hooks

    original = output_hooks.CheckpointHook.after_epoch

    def stop_after_checkpoint(self: Any) -> None:
        original(self)
        if self.trainer.epoch == epoch:
            raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(output_hooks.CheckpointHook, "after_epoch", stop_after_checkpoint)
        yield


def hold_after_step(iteration: int, marker: Path) -> None:
    """From now on, training stops for good right after global step ``iteration`` (its weights updated in memory,
    the epoch not committed), first writing ``marker``: a parent process kills it there, at a known point."""
    import os
    import time

    from yolokit.train.trainer import Trainer

    original = Trainer.run_step

    def run_step_then_hold(self: Any, batch: Any) -> None:
        original(self, batch)
        if self.iteration == iteration:
            marker.write_text(str(os.getpid()))
            time.sleep(600)  # the parent kills it long before; never left behind when a test fails first
            raise SystemExit(f"held after step {iteration} for 600 s and nobody killed this process")

    Trainer.run_step = run_step_then_hold


if __name__ == "__main__":  # the resume test's child process
    import os

    torch.set_num_threads(1)
    data_path, project_dir, run_name, *words = sys.argv[1:]
    from yolokit.config import parse_key_values

    if os.environ.get("YOLOKIT_TEST_HOLD_AFTER_STEP"):
        hold_after_step(int(os.environ["YOLOKIT_TEST_HOLD_AFTER_STEP"]), Path(os.environ["YOLOKIT_TEST_HOLD_MARKER"]))

    spec = TINY_E2E if "e2e" in run_name else TINY_V8
    train_tiny(Path(data_path), Path(project_dir), run_name, spec=spec, **parse_key_values(words))
