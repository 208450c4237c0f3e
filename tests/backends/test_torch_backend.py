"""TorchBackend: prepares a private fused copy and exposes the Backend surface (threads: test_backend_threads.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from yolokit.backends import Backend, TorchBackend
from yolokit.errors import ConfigError
from yolokit.models.builder import build_model
from yolokit.models.spec import load_spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def tiny(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(load_spec(str(FIXTURES / f"{name}-tiny.yaml")))


def test_backend_matches_model_and_leaves_it_untouched():
    model = tiny("yolo11")
    model.train()
    backend = TorchBackend(model)
    assert model.training and not model.is_fused()  # the caller's model is not fused or switched to eval
    assert backend.model.is_fused() and not backend.model.training
    x = torch.rand(2, 3, 64, 96)
    model.eval()
    with torch.no_grad():
        expected = model(x)
    got = backend(x)
    assert got.shape == expected.shape == (2, 4 + 3, 8 * 12 + 4 * 6 + 2 * 3)
    assert torch.allclose(got, expected, atol=1e-4)
    assert backend.stride == 32 and backend.dynamic and not backend.end2end
    assert backend.names == model.names
    assert isinstance(backend, Backend) and backend.engine == "channels_last" and backend.device.type == "cpu"
    assert backend.metadata == {} and not backend.nms_free  # built from a spec: no weights metadata
    with pytest.raises(ConfigError, match="one-to-one"):
        backend.set_nms_free(True)
    with pytest.raises(ValueError, match="multiples of 32"):
        backend(torch.zeros(1, 3, 50, 64))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        backend(torch.zeros(3, 64, 64))


def test_backend_nms_free_switch_for_yolo26():
    backend = TorchBackend(tiny("yolo26"))
    assert backend.end2end
    x = torch.rand(1, 3, 64, 64)
    assert backend(x).shape == (1, 4 + 3, 84)
    backend.set_nms_free(True)
    assert backend.nms_free
    rows = backend(x)
    assert rows.shape == (1, 84, 6)  # top-k = min(300, 84 anchors)
    assert torch.all(rows[0, :-1, 4] >= rows[0, 1:, 4])  # sorted by score
    backend.set_nms_free(False)
    assert backend(x).shape == (1, 7, 84)


def test_rejects_non_models_and_cpu_half(caplog):
    with pytest.raises(ConfigError, match="DetectionModel"):
        TorchBackend(torch.nn.Conv2d(3, 3, 1))
    backend = TorchBackend(tiny("yolov8"), half=True)
    assert backend.dtype == torch.float32 and "CUDA" in caplog.text
