"""The training run's torch thread count: chosen once from the free cores (busy_cpus mocked), logged, recorded in
args.yaml / the state / the weights, reused by a resume without a new probe, and followed by the loader workers."""

from __future__ import annotations

import logging

import pytest
import torch
import yaml

from yolokit.config import make_config
from yolokit.train import threads as train_threads
from yolokit.train.config import TrainConfig
from yolokit.train.threads import choose_train_threads
from yolokit.train.trainer import Trainer, loader_workers
from yolokit.utils import threads as thread_utils

from .train_helpers import assert_same_tensors, interrupted_after_epoch, run_tensors, tiny_data, train_tiny


@pytest.fixture
def two_free_cores(monkeypatch):
    """A 2-core machine (1 thread per core), torch at its default of one thread per core, no OMP_NUM_THREADS;
    ``set_busy(x)`` makes the /proc/stat probe report ``x`` busy CPUs."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(thread_utils, "physical_cores", lambda: 2)
    monkeypatch.setattr(thread_utils, "_threads_per_core", lambda: 1)
    before = torch.get_num_threads()
    torch.set_num_threads(2)

    def set_busy(busy):
        def probe(probe_s=0.05):
            if busy is None:
                raise AssertionError("the free cores were probed again")
            return busy

        monkeypatch.setattr(thread_utils, "busy_cpus", probe)

    yield set_busy
    torch.set_num_threads(before)


@pytest.mark.parametrize(("busy", "count", "line"), [(1.0, 1, "threads: 1 of 2 cores (1 busy)"),
                                                     (0.93, 1, "threads: 1 of 2 cores (0.9 busy)"),
                                                     (0.4, 2, "threads: 2 of 2 cores (0.4 busy)"),
                                                     (0.0, 2, "threads: 2 of 2 cores (0 busy)"),
                                                     (2.0, 1, "threads: 1 of 2 cores (2 busy)")])
def test_adaptive_count_is_the_free_cores_and_logs_one_line(two_free_cores, caplog, busy, count, line):
    two_free_cores(busy)
    config = make_config(TrainConfig, data="d.yaml", epochs=3)
    with caplog.at_level(logging.INFO, logger="yolokit.train.threads"):
        chosen = choose_train_threads(config)
    assert chosen.threads == count
    assert chosen.given == config.given == {"data", "epochs"}  # recorded, not a key the user set
    assert (chosen.data, chosen.epochs) == ("d.yaml", 3)
    assert [r.getMessage() for r in caplog.records] == [line]


def test_a_given_or_preset_count_is_kept_without_probing(two_free_cores, monkeypatch, caplog):
    two_free_cores(None)  # any probe fails the test
    with caplog.at_level(logging.INFO, logger="yolokit.train.threads"):
        given = make_config(TrainConfig, threads=3)
        assert choose_train_threads(given) is given
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert choose_train_threads(TrainConfig()).threads == 2  # torch's current count, sized by the launcher
        monkeypatch.delenv("OMP_NUM_THREADS")
        torch.set_num_threads(1)  # below the cores: the caller's torch.set_num_threads
        assert choose_train_threads(TrainConfig()).threads == 1
        assert choose_train_threads(TrainConfig.restore({"threads": 1}, [])).threads == 1
    assert [r.getMessage() for r in caplog.records] == [
        "threads: 3 (threads=3)", "threads: 2 (OMP_NUM_THREADS=2)", "threads: 1 (set with torch.set_num_threads)",
        "threads: 1 (the run's recorded count)"]


@pytest.mark.parametrize("bad", [0, -1, True])
def test_threads_key_is_checked(bad):
    with pytest.raises(Exception, match="threads must be an integer >= 1|expects int"):
        make_config(TrainConfig, threads=bad)


@pytest.mark.parametrize(("cpus", "threads", "busy", "workers"), [(2, 1, 0.0, 1), (2, 2, 0.0, 0), (2, 1, 0.9, 0),
                                                                 (8, 2, 1.2, 5), (8, 2, 0.4, 6), (4, 4, 3.0, 0)])
def test_loader_workers_follow_the_chosen_count_and_the_busy_cpus(monkeypatch, cpus, threads, busy, workers):
    monkeypatch.setattr(train_threads, "_available_cpus", lambda: cpus)
    monkeypatch.setattr(thread_utils, "busy_cpus", lambda probe_s=0.05: busy)
    cpu = torch.device("cpu")
    assert loader_workers(make_config(TrainConfig, threads=threads), cpu) == workers
    assert loader_workers(make_config(TrainConfig, threads=threads, workers=2), cpu) == 2  # given: used


@pytest.mark.slow
def test_adaptive_count_is_recorded_and_reused_on_resume(two_free_cores, tmp_path, monkeypatch):
    data = tiny_data(tmp_path / "data")
    seen = []
    run_step = Trainer.run_step
    monkeypatch.setattr(Trainer, "run_step", lambda self, batch: (seen.append(torch.get_num_threads()),
                                                                  run_step(self, batch)))
    two_free_cores(1.0)  # one core busy at the start: 1 thread
    with interrupted_after_epoch(0):
        train_tiny(data, tmp_path, "run", epochs=2)
    run = tmp_path / "run"
    assert yaml.safe_load((run / "args.yaml").read_text())["threads"] == 1
    state = torch.load(run / "weights" / "last_state.pt", weights_only=True)
    assert state["config"]["threads"] == 1 and "threads" not in state["given"]
    assert torch.get_num_threads() == 2  # restored after the run
    two_free_cores(None)  # the resume must not probe: it reuses the recorded count (2 would be free now)
    train_tiny(data, tmp_path, "run", resume=str(run))
    assert set(seen) == {1}
    from yolokit.weights import read_weights

    assert read_weights(run / "weights" / "last.safetensors").metadata["provenance"]["train_args"]["threads"] == 1
    train_tiny(data, tmp_path, "full", epochs=2, threads=1)
    assert_same_tensors(run_tensors(run), run_tensors(tmp_path / "full"))


def test_resume_settings_keep_the_recorded_count(two_free_cores, caplog):
    from yolokit.train.api import _resume_config

    saved = make_config(TrainConfig, data="d.yaml", threads=1).to_dict()
    state = {"config": {**saved, "threads": 1}, "given": ["data"]}
    resume = make_config(TrainConfig, resume="runs/train")
    assert _resume_config(resume, state).threads == 1  # recorded: not torch's current 2, not a probe
    legacy = {"config": {k: v for k, v in saved.items() if k != "threads"}, "given": ["data"]}
    assert _resume_config(resume, legacy).threads == 2  # saved before counts were recorded: torch's count, as then
    with caplog.at_level(logging.WARNING, logger="yolokit.train.api"):
        changed = _resume_config(make_config(TrainConfig, resume="runs/train", threads=2), state)
    assert changed.threads == 2 and "will not be bit-identical" in caplog.text
