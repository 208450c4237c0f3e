"""A real resume reads ``last_state.pt`` through yolokit's restricted unpickler (``torch.load`` is never called) and
still ends bit-identical to the uninterrupted run."""

from __future__ import annotations

import torch

from .train_helpers import assert_same_tensors, interrupted_after_epoch, run_tensors, tiny_data, train_tiny


def test_resume_never_calls_torch_load_and_stays_bit_exact(tmp_path, monkeypatch, one_thread):
    data = tiny_data(tmp_path / "data")
    train_tiny(data, tmp_path, "full", epochs=2)
    with interrupted_after_epoch(0):
        train_tiny(data, tmp_path, "cut", epochs=2)

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load must not read the training state")

    with monkeypatch.context() as patch:
        patch.setattr(torch, "load", refuse)
        train_tiny(data, tmp_path, "cut", resume=str(tmp_path / "cut"))
    assert_same_tensors(run_tensors(tmp_path / "cut"), run_tensors(tmp_path / "full"))
