"""TorchBackend engines: channels-last and traced/frozen graphs give the eager fused model's outputs."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from yolokit.backends import TorchBackend
from yolokit.config import PredictConfig
from yolokit.errors import ConfigError
from yolokit.models.builder import build_model
from yolokit.models.spec import load_spec
from yolokit.predict.predictor import Predictor

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def tiny(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(load_spec(str(FIXTURES / f"{name}-tiny.yaml")))


def assert_close(got: torch.Tensor, expected: torch.Tensor) -> None:
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4), float((got - expected).abs().max())


@pytest.mark.parametrize("name", ["yolov8", "yolo11", "yolo26"])
@pytest.mark.parametrize("engine", ["channels_last", "jit"])
def test_engines_equal_eager(name, engine):
    model = tiny(name)
    eager, fast = TorchBackend(model, engine="eager"), TorchBackend(model, engine=engine)
    assert fast.engine == engine and fast.model.is_fused()
    x = torch.rand(2, 3, 64, 96)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tracing must not leak TracerWarnings / deprecation notices to users
        assert_close(fast(x), eager(x))
        assert_close(fast(x), eager(x))  # second call: the cached graph
    if model.end2end:
        for backend in (eager, fast):
            backend.set_nms_free(True)
        rows = fast(x)
        assert rows.shape == (2, 126, 6)
        assert_close(rows, eager(x))


@pytest.mark.slow
def test_jit_cache_per_shape_and_head_choice():
    backend = TorchBackend(tiny("yolo26"), engine="jit", jit_cache_size=2)
    a, b, c = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 96), torch.rand(2, 3, 64, 64)
    assert backend(a).shape == (1, 7, 84)
    assert backend(b).shape == (1, 7, 126)  # another shape: its own graph, not the 64x64 one
    assert len(backend._graphs) == 2
    backend(c)
    assert len(backend._graphs) == 2  # least recently used graph dropped
    assert {key[0] for key in backend._graphs} == {(1, 3, 64, 96), (2, 3, 64, 64)}
    backend.set_nms_free(True)
    assert backend(a).shape == (1, 84, 6)  # the head switch is part of the key
    backend.model.head.max_det = 10
    assert backend(a).shape == (1, 10, 6)  # so is max_det
    backend.clear_cache()
    assert not backend._graphs


def test_jit_after_weight_change_and_clear_cache_equals_eager():
    backend = TorchBackend(tiny("yolo11"), engine="jit")
    x = torch.rand(1, 3, 64, 64)
    before = backend(x)
    with torch.no_grad():
        backend.model.head.cv3[0][-1].bias.add_(6.0)
    backend.clear_cache()
    after = backend(x)
    assert (after[:, 4:] - before[:, 4:]).abs().max() > 0.05  # the new graph uses the new class bias
    with torch.inference_mode():
        assert_close(after, backend.model(x.contiguous(memory_format=torch.channels_last)))


def test_engine_choice_and_errors():
    assert TorchBackend(tiny("yolov8")).engine == "channels_last"  # auto on CPU
    assert TorchBackend(tiny("yolov8"), engine="eager").memory_format == torch.contiguous_format
    with pytest.raises(ConfigError, match="engine"):
        TorchBackend(tiny("yolov8"), engine="tensorrt")
    assert "engine=jit" in repr(TorchBackend(tiny("yolov8"), engine="jit"))


@pytest.mark.slow
@pytest.mark.parametrize("nms", [True, False])
def test_predictions_through_jit_equal_eager(nms):
    from yolokit.weights import load_weights

    model = load_weights(FIXTURES / "yolo26-tiny-shapes.pt")
    sources = sorted(str(p) for p in (FIXTURES / "images").iterdir())[:3]
    config = PredictConfig(conf=0.05, imgsz=320, nms=nms, verbose=False)  # the parity fixture settings
    expected = Predictor(TorchBackend(model, engine="eager"), config).predict(sources)
    got = Predictor(TorchBackend(model, engine="jit"), config).predict(sources)
    for a, b in zip(expected, got, strict=True):
        assert a.boxes.data.shape == b.boxes.data.shape and len(a) > 0
        assert torch.allclose(a.boxes.data, b.boxes.data, atol=1e-3)


def test_inplace_activations_only_on_the_private_copy():
    model = tiny("yolo11")
    backend = TorchBackend(model)
    acts = [m.act for m in backend.model.modules() if hasattr(m, "act") and isinstance(m.act, torch.nn.SiLU)]
    assert acts and all(act.inplace for act in acts)
    assert not any(m.act.inplace for m in model.modules() if hasattr(m, "act") and isinstance(m.act, torch.nn.SiLU))
    assert list(backend.model.state_dict()) == list(TorchBackend(model, engine="eager").model.state_dict())
    in_place = TorchBackend(model, copy=False)  # the caller's model stays trainable: no in-place activations
    assert in_place.model is model and not any(
        m.act.inplace for m in model.modules() if hasattr(m, "act") and isinstance(m.act, torch.nn.SiLU))
