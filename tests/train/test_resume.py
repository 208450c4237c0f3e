"""Exact resume: a training process killed with SIGKILL during epoch 3 of 4, resumed, ends bit-identical to a run
that was never interrupted (every tensor of the weights and of the training state compared with torch.equal)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from train.train_helpers import assert_same_tensors, run_tensors, tiny_data

HELPER = Path(__file__).with_name("train_helpers.py")
EPOCHS = 4
TIMEOUT = 300


def _child(data: Path, project: Path, name: str, *words: str, hold: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path), **(hold or {})}
    return subprocess.Popen([sys.executable, str(HELPER), str(data), str(project), name, *words], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish(process: subprocess.Popen) -> None:
    _, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, err.decode(errors="replace")[-3000:]


def _completed_epochs(state_path: Path) -> int:
    try:
        return int(torch.load(state_path, weights_only=True)["epoch"]) + 1
    except Exception:  # noqa: BLE001 - not written yet (the rename is atomic, so never half a file)
        return 0


def _kill_during_epoch_3(process: subprocess.Popen, run_dir: Path, marker: Path) -> None:
    """SIGKILL once the child holds after its step in epoch 3 (weights moved on in memory, epoch 3 not committed)."""
    deadline = time.monotonic() + TIMEOUT
    while not marker.is_file():
        assert process.poll() is None, process.stderr.read().decode(errors="replace")[-3000:]
        assert time.monotonic() < deadline, "the child did not reach its step in epoch 3 in time"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert _completed_epochs(run_dir / "weights" / "last_state.pt") == 2  # epoch 2 committed, epoch 3 not
    assert len((run_dir / "results.csv").read_text().splitlines()) == 3  # header + 2 rows


@pytest.mark.slow
@pytest.mark.parametrize(("workers", "resume_by"), [(0, "run_dir"), (2, "last_weights")])
def test_sigkill_during_epoch_3_then_resume_is_bit_identical(tmp_path, workers, resume_by):
    data = tiny_data(tmp_path / "data", n_train=12, n_val=2)
    # 3 batches per epoch, accumulation 4 after a 3-iteration warmup: optimizer steps at iterations 0, 4, 8, so the
    # last commit (end of epoch 2, iteration 5) has gradients summed but not yet applied: they must be resumed too.
    # The child holds after iteration 7 (epoch 3's second step, more gradients summed in memory only) to be killed.
    common = (f"epochs={EPOCHS}", f"workers={workers}", "optimizer=MuSGD", "close_mosaic=1", "nbs=16")
    reference = _child(data, tmp_path, "full_e2e", *common)
    marker = tmp_path / "held"
    hold = {"YOLOKIT_TEST_HOLD_AFTER_STEP": "7", "YOLOKIT_TEST_HOLD_MARKER": str(marker)}
    killed = _child(data, tmp_path, "killed_e2e", *common, hold=hold)
    _kill_during_epoch_3(killed, tmp_path / "killed_e2e", marker)
    _finish(reference)
    run = tmp_path / "killed_e2e"
    words = [f"resume={run}"] if resume_by == "run_dir" else ["resume=True", f"model={run}/weights/last.safetensors"]
    _finish(_child(data, tmp_path, "killed_e2e", *words, *common))
    assert_same_tensors(run_tensors(tmp_path / "full_e2e"), run_tensors(run))
    full_rows = (tmp_path / "full_e2e" / "results.csv").read_text().splitlines()
    resumed_rows = (run / "results.csv").read_text().splitlines()
    assert len(resumed_rows) == EPOCHS + 1
    drop_time = [[cell for i, cell in enumerate(row.split(",")) if i != 1] for row in (*full_rows, *resumed_rows)]
    assert drop_time[: EPOCHS + 1] == drop_time[EPOCHS + 1:]  # the same losses and metrics, epoch by epoch
