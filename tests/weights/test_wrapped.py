"""DDP / DataParallel (``module.``) and torch.compile (``_orig_mod.``) prefixes: stripped when reading and saving."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from yolokit.weights import load_model, read_weights, save_weights, transfer_weights
from yolokit.weights.keys import strip_wrapper_prefixes, unwrap_model
from yolokit.weights.metadata import build_metadata
from yolokit.weights.native import write_native_pt, write_safetensors

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


class Compiled(nn.Module):
    """Holds the model as ``_orig_mod`` exactly like torch.compile's ``OptimizedModule`` (which takes seconds to
    import): its state_dict keys are ``_orig_mod.<name>``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self._orig_mod = model


@pytest.fixture(scope="module")
def model() -> nn.Module:
    from yolokit.models.builder import build_model
    from yolokit.models.spec import load_spec

    torch.manual_seed(0)
    net = build_model(load_spec(FIXTURES / "yolov8-tiny.yaml"), num_classes=3).eval()
    net.names = {0: "a", 1: "b", 2: "c"}
    return net


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (["module.a.weight", "module.b"], ["a.weight", "b"]),  # DDP / DataParallel
        (["_orig_mod.model.0.w", "_orig_mod.x"], ["model.0.w", "x"]),  # torch.compile
        (["module._orig_mod.m.w", "module._orig_mod.n"], ["m.w", "n"]),  # DDP around a compiled model
        (["_orig_mod.module.m.w"], ["m.w"]),  # compiled DDP
        (["module.a", "b"], ["module.a", "b"]),  # a submodule named "module" beside others is a real name
        (["model.module.w"], ["model.module.w"]),  # only prefixes
        ([], []),
    ],
)
def test_strip_wrapper_prefixes(keys: list[str], expected: list[str]) -> None:
    stripped = strip_wrapper_prefixes({key: i for i, key in enumerate(keys)})
    assert list(stripped) == expected and list(stripped.values()) == list(range(len(keys)))


def test_unwrap_model(model: nn.Module) -> None:
    assert unwrap_model(nn.DataParallel(model)) is model
    assert unwrap_model(Compiled(model)) is model
    assert unwrap_model(nn.DataParallel(Compiled(model))) is model
    assert unwrap_model(model) is model


@pytest.mark.parametrize("wrap", [nn.DataParallel, Compiled, lambda m: nn.DataParallel(Compiled(m))])
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_saving_a_wrapped_model_stores_plain_names(model: nn.Module, tmp_path: Path, wrap, suffix: str) -> None:
    wrapped = wrap(model)
    assert all(k.startswith(("module.", "_orig_mod.")) for k in wrapped.state_dict())  # the wrapper does prefix
    path = save_weights(wrapped, tmp_path / f"w{suffix}")
    stored = read_weights(path)
    assert list(stored.state_dict) == list(model.state_dict())
    assert stored.metadata["names"] == {0: "a", 1: "b", 2: "c"} and stored.metadata["stride"] == [8, 16, 32]


@pytest.mark.parametrize(
    ("writer", "prefix"),
    [(write_safetensors, "module."), (write_native_pt, "_orig_mod."), (write_native_pt, "module._orig_mod.")],
)
def test_reading_a_file_saved_from_a_wrapped_state_dict(model: nn.Module, tmp_path: Path, writer, prefix: str) -> None:
    prefixed = {prefix + k: v for k, v in model.state_dict().items()}  # as another tool saves a DDP model
    path = writer(tmp_path / ("w.safetensors" if writer is write_safetensors else "w.pt"), prefixed,
                  build_metadata(model))  # fmt: skip
    assert list(read_weights(path).state_dict) == list(model.state_dict())
    loaded = load_model(path)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_transfer_between_wrapped_models(model: nn.Module, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from yolokit.models.builder import build_model

    path = tmp_path / "ddp.safetensors"
    save_file({k: v.contiguous() for k, v in nn.DataParallel(model).state_dict().items()}, str(path))
    target = build_model(model.spec, num_classes=3)
    for source in (path, nn.DataParallel(model), Compiled(model).state_dict()):
        with torch.no_grad():
            for tensor in target.state_dict().values():
                tensor.zero_()
        report = transfer_weights(nn.DataParallel(target), source)  # tensors land in the wrapped model
        assert report.transferred == report.total == len(model.state_dict()) == 355 and report.skipped == []
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in target.state_dict().items())
