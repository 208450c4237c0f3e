"""Thread counts: helpers in yolokit.utils.threads, and backends that never change torch's process-wide setting."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import yolokit.utils.threads as threads
from yolokit.backends import Backend, OnnxRuntimeBackend, TorchBackend, create_backend
from yolokit.errors import ConfigError
from yolokit.model import YOLO
from yolokit.utils.threads import check_num_threads, physical_cores, resolve_threads, torch_threads
from yolokit.weights import load_weights

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WEIGHTS = FIXTURES / "yolo11-tiny-shapes.pt"


@pytest.fixture
def torch_count():
    """torch's thread count on entry, restored after the test whatever happens."""
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def other_count(current: int) -> int:
    """A thread count different from ``current`` (so a change is observable)."""
    return 1 if current != 1 else 2


def test_thread_helpers(monkeypatch):
    assert physical_cores() >= 1
    monkeypatch.setattr(threads, "_threads_per_core", lambda: 2)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
    assert physical_cores() == 3  # 6 logical CPUs in the mask, 2 per core
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert resolve_threads() == 5 and resolve_threads(2) == 2  # an explicit count wins over the environment
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert resolve_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert resolve_threads() == 3
    assert check_num_threads(None) is None and check_num_threads(4) == 4
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ConfigError, match="num_threads must be >= 1"):
            check_num_threads(bad)


def test_torch_threads_sets_and_restores(torch_count, monkeypatch):
    wanted = other_count(torch_count)
    with torch_threads(wanted):
        assert torch.get_num_threads() == wanted
    assert torch.get_num_threads() == torch_count
    with pytest.raises(RuntimeError, match="inside"), torch_threads(wanted):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == torch_count  # restored on errors too
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    with torch_threads(None), torch_threads(torch_count):
        pass
    assert calls == []  # nothing to change: torch is not touched at all


def forward_threads(backend: TorchBackend) -> list[int]:
    """Record torch's thread count seen inside every forward pass of ``backend``'s model."""
    seen: list[int] = []
    backend.model.register_forward_pre_hook(lambda module, args: seen.append(torch.get_num_threads()))
    return seen


@pytest.mark.parametrize("engine", ["channels_last", "jit"])
def test_torch_backend_uses_its_threads_per_call_only(torch_count, engine):
    wanted = other_count(torch_count)
    model = load_weights(WEIGHTS)
    backend = TorchBackend(model, engine=engine, num_threads=wanted)
    assert torch.get_num_threads() == torch_count  # creating it changed nothing
    seen = forward_threads(backend)
    backend.warmup(64)
    assert seen and set(seen) == {wanted}  # the traced (jit) or eager pass ran with the backend's count
    assert backend(torch.rand(1, 3, 64, 64)).shape == (1, 7, 84)
    assert torch.get_num_threads() == torch_count
    default = TorchBackend(model, engine="eager")  # num_threads=None: torch's own setting
    torch.set_num_threads(wanted)  # a user's own choice, made after the backend exists, is what it runs with
    seen = forward_threads(default)
    default(torch.rand(1, 3, 64, 64))
    assert seen == [wanted] and torch.get_num_threads() == wanted


@pytest.mark.slow
def test_creating_and_running_backends_leaves_torch_threads_alone(torch_count):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    wanted = other_count(torch_count)
    model = load_weights(WEIGHTS)
    x = torch.rand(1, 3, 64, 64)
    ort_backend = create_backend(model, engine="onnxruntime", num_threads=wanted)
    assert isinstance(ort_backend, OnnxRuntimeBackend)
    assert ort_backend.session.get_session_options().intra_op_num_threads == wanted  # the session's own setting
    assert ort_backend(x).shape == (1, 7, 84)
    torch_backend = create_backend(model, engine="channels_last", num_threads=wanted)
    assert torch_backend(x).shape == (1, 7, 84)
    assert torch_backend.metadata["names"] == ort_backend.names == {0: "rectangle", 1: "ellipse", 2: "triangle"}
    auto = create_backend(model)  # the default engine, default threads
    assert auto.engine == "onnxruntime" and auto(x).shape == (1, 7, 84)
    assert all(isinstance(b, Backend) for b in (ort_backend, torch_backend, auto))
    YOLO(WEIGHTS).predict(torch.zeros(64, 64, 3, dtype=torch.uint8).numpy(), imgsz=64, verbose=False)
    assert torch.get_num_threads() == torch_count
