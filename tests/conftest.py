"""Suite-wide isolation: yolokit's cache (downloads, exported ONNX graphs) lives in a temporary folder.

The default CPU engine caches exported graphs on disk; sharing one temporary cache across the session keeps the
suite fast (each fixture model is exported once) without touching the user's ``~/.cache/yolokit``.
"""

import contextlib
from collections.abc import Iterator

import pytest
import torch
from torch import nn


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    patcher = pytest.MonkeyPatch()
    patcher.setenv("YOLOKIT_CACHE_DIR", str(tmp_path_factory.mktemp("yolokit-cache")))
    yield
    patcher.undo()


@contextlib.contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """torch on ``count`` intra-op threads inside the block, the previous count restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture()
def one_thread():
    """torch on one thread for the test (restored after): tiny models on a shared 2-core machine run 10x+ faster
    than on oversubscribed threads, and a torchrun worker (OMP_NUM_THREADS=1) makes the same floating-point sums.
    Ask for it by name, or module-wide with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    with _torch_threads(1):
        yield


@pytest.fixture(scope="module")
def one_thread_module():
    """``one_thread`` for a whole module, module-scoped fixtures included (a training run shared by the module's
    tests runs on one thread too): ``pytestmark = pytest.mark.usefixtures("one_thread_module")``. A module-scoped
    fixture listed there is set up before the module-scoped fixtures the tests ask for by name."""
    with _torch_threads(1):
        yield


def randomise_batchnorm(module: nn.Module, seed: int = 0, spread: float = 0.5) -> None:
    """Non-trivial BatchNorm statistics and affine terms, so outputs depend on every BN tensor.

    Means and biases ~ N(0, spread); variances and weights ~ U(1 - spread, 1 + spread). Import it in tests with
    ``from conftest import randomise_batchnorm``.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, nn.BatchNorm2d):
                n = bn.num_features
                bn.running_mean.copy_(torch.randn(n, generator=g) * spread)
                bn.running_var.copy_(1 - spread + 2 * spread * torch.rand(n, generator=g))
                bn.weight.copy_(1 - spread + 2 * spread * torch.rand(n, generator=g))
                bn.bias.copy_(torch.randn(n, generator=g) * spread)


def round_to_fp16(module: nn.Module) -> None:
    """Every floating-point tensor of ``module``'s state rounded to the nearest fp16 value, in place (stored in a
    half checkpoint, it then reads back exactly)."""
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
