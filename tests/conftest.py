"""Suite-wide isolation: yolokit's cache (downloads, exported ONNX graphs) lives in a temporary folder.

The default CPU engine caches exported graphs on disk; sharing one temporary cache across the session keeps the
suite fast (each fixture model is exported once) without touching the user's ``~/.cache/yolokit``.
"""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    patcher = pytest.MonkeyPatch()
    patcher.setenv("YOLOKIT_CACHE_DIR", str(tmp_path_factory.mktemp("yolokit-cache")))
    yield
    patcher.undo()
