"""Training-state files, RNG states and the dataset fingerprint.

A run directory's ``weights/`` holds ``last.safetensors`` / ``best.safetensors`` (the EMA weights, native format
with metadata) and ``last_state.pt``: everything else a resumed run needs to continue exactly (model and EMA
tensors, optimizer, counters, every RNG state, sampler position, loss and hook states). The state file is a
``torch.save`` of plain tensors, numbers, strings, lists and dicts, read back by yolokit's restricted unpickler
(``weights.native.read_plain_pt``, the guarded reader of native ``.pt`` files): no code runs on load. Every file
is written atomically (temp file + fsync + rename); the state file is written last in an epoch, so it is the commit
point: a kill at any moment leaves the last complete epoch resumable.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolokit.errors import ConfigError
from yolokit.utils.io import atomic_open

__all__ = ["STATE_FILE", "STATE_FORMAT", "capture_rng", "restore_rng", "save_state", "load_state",
           "dataset_fingerprint", "state_path_for"]

STATE_FILE = "last_state.pt"
STATE_FORMAT = "yolokit-train-state"
STATE_VERSION = 1


def capture_rng() -> dict[str, Any]:
    """The states of Python's ``random``, NumPy's global generator, torch CPU and (when present) every CUDA device."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put back the states of :func:`capture_rng` (CUDA states only when CUDA is present)."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (plain types and tensors) with ``torch.save``, atomically."""
    payload = {"format": STATE_FORMAT, "version": STATE_VERSION, **state}
    with atomic_open(path, "wb") as handle:
        torch.save(payload, handle)
    return Path(path)


def load_state(path: str | Path) -> dict[str, Any]:
    """Read a state file written by :func:`save_state` with yolokit's restricted unpickler (``weights.native.
    read_plain_pt``: torch's tensor globals only, nesting and sizes bounded): nothing in it is executed."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no training state at {path}: resume needs the run directory of a yolokit training run "
                          f"(with weights/{STATE_FILE}); start a new run instead")
    from yolokit.errors import WeightsError
    from yolokit.weights.native import read_plain_pt

    try:  # the guarded reader of weights files (depth, sizes, tensor globals only), never torch.load
        state = read_plain_pt(path)
    except WeightsError as error:
        reason = str(error).removeprefix(f"{path}: ")
        raise ConfigError(f"cannot read the training state {path} ({reason}): the file is damaged or not a yolokit "
                          "state file; start a new run") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ConfigError(f"{path} is not a yolokit training state file: pass a yolokit run directory")
    if int(state.get("version", 0)) > STATE_VERSION:
        raise ConfigError(f"{path} was written by a newer yolokit (state version {state['version']}): upgrade yolokit")
    return state


def state_path_for(resume: bool | str, model: str) -> Path:
    """The state file to resume: ``resume=RUN_DIR`` -> ``RUN_DIR/weights/last_state.pt``; ``resume=True`` -> beside
    ``model`` (``RUN_DIR/weights/last.safetensors``)."""
    if isinstance(resume, str):
        run = Path(resume)
        if run.is_file():
            return run if run.name == STATE_FILE else run.parent / STATE_FILE
        return run / "weights" / STATE_FILE
    if not model:
        raise ConfigError("resume=True needs model=RUN_DIR/weights/last.safetensors (or pass resume=RUN_DIR)")
    return Path(model).parent / STATE_FILE


def dataset_fingerprint(labels: Sequence[Any], root: str | Path | None = None) -> str:
    """sha256 over the image list and every label (class ids and boxes), independent of where the data lives.

    ``labels`` are ``ImageLabels`` (``im_file``, ``cls``, ``bboxes``); paths enter relative to ``root`` when they
    are inside it, so the same dataset copied elsewhere has the same fingerprint.
    """
    digest = hashlib.sha256(b"yolokit-dataset-v1\n")
    base = Path(root).resolve() if root is not None else None
    for item in labels:
        path = Path(item.im_file)
        if base is not None and path.is_relative_to(base):
            path = path.relative_to(base)
        digest.update(path.as_posix().encode("utf-8", "surrogateescape") + b"\n")
        digest.update(np.ascontiguousarray(item.cls, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(item.bboxes, dtype=np.float32).tobytes())
    return digest.hexdigest()
