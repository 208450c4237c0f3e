"""Training-state files: RNG round trip, weights_only loading, atomic writes, dataset fingerprint."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest
import torch

from yolokit.data.labels import ImageLabels
from yolokit.errors import ConfigError
from yolokit.train.checkpoint import (
    capture_rng,
    dataset_fingerprint,
    load_state,
    restore_rng,
    save_state,
    state_path_for,
)


def _draws():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.randn()  # leave a cached gaussian behind
    save_state(tmp_path / "s.pt", {"rng": capture_rng()})
    expected = [_draws() for _ in range(3)]
    restore_rng(load_state(tmp_path / "s.pt")["rng"])
    assert [_draws() for _ in range(3)] == expected


def test_state_files_hold_only_plain_types(tmp_path):
    state = {"epoch": 3, "model": {"w": torch.ones(2)}, "grads": [None, torch.zeros(1)], "names": {0: "a"}}
    save_state(tmp_path / "s.pt", state)
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)
    assert loaded["format"] == "yolokit-train-state" and loaded["epoch"] == 3 and loaded["grads"][0] is None
    assert torch.equal(load_state(tmp_path / "s.pt")["model"]["w"], torch.ones(2))


def test_a_failed_write_leaves_the_previous_state(tmp_path, monkeypatch):
    path = save_state(tmp_path / "s.pt", {"epoch": 1})

    def crash(obj, handle):
        handle.write(b"half a file")
        raise KeyboardInterrupt  # a kill in the middle of the write

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_state(path, {"epoch": 2})
    monkeypatch.undo()
    assert load_state(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["s.pt"]  # no temporary left behind


def test_unusable_state_files_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="no training state at"):
        load_state(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="cannot read the training state"):
        load_state(tmp_path / "bad.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="not a yolokit training state"):
        load_state(tmp_path / "other.pt")


def test_state_path_for_resume_values(tmp_path):
    run = tmp_path / "run"
    assert state_path_for(str(run), "") == run / "weights" / "last_state.pt"
    assert state_path_for(True, str(run / "weights" / "last.safetensors")) == run / "weights" / "last_state.pt"
    with pytest.raises(ConfigError, match="resume=True needs model="):
        state_path_for(True, "")


def _labels(root, boxes=((0.5, 0.5, 0.2, 0.2),)):
    return [ImageLabels(str(root / "images" / "a.jpg"), (64, 64), np.array([1]), np.array(boxes, np.float32)),
            ImageLabels(str(root / "images" / "b.jpg"), (64, 64), np.zeros(0, np.int64), np.zeros((0, 4), np.float32))]


def test_dataset_fingerprint_follows_the_content_not_the_location(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    fingerprint = dataset_fingerprint(_labels(one), one)
    assert len(fingerprint) == 64
    assert dataset_fingerprint(_labels(two), two) == fingerprint  # the same dataset elsewhere
    assert dataset_fingerprint(_labels(one, ((0.5, 0.5, 0.2, 0.3),)), one) != fingerprint  # one label changed
    assert dataset_fingerprint(_labels(one)[:1], one) != fingerprint  # one image fewer
    shutil.rmtree(tmp_path, ignore_errors=True)
