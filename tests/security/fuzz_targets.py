"""Property-based fuzz targets (hypothesis) over yolokit's readers of untrusted input.

Each target takes a valid seed file, applies a few random mutations (flip / insert / delete / truncate) and hands
the result to a reader. The property: the reader returns a well-formed value or raises a ``YolokitError`` whose
message is one line. Any other exception fails the target (hypothesis shrinks it to a minimal file first); a crash or
hang is caught by the caller, which runs the targets in a memory-capped child with a timeout
(``security_helpers.run_cases``). Runs are derandomized, so CI is reproducible; ``run(name, n)`` runs one target.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yolokit.errors import YolokitError

MAX_OPS = 4


@st.composite
def mutated(draw, seed: bytes, region: tuple[int, int] | None = None) -> bytes:
    """``seed`` with 1..MAX_OPS random edits, positions inside ``region`` (default: the whole seed)."""
    data = bytearray(seed)
    low, high = region or (0, len(seed))
    for _ in range(draw(st.integers(1, MAX_OPS))):
        if not data:
            break
        high = min(high, len(data))
        pos = draw(st.integers(low, max(low, high - 1)))
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "byte"]))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        else:
            del data[pos:]
    return bytes(data)


def _one_line(error: YolokitError) -> None:
    text = str(error)
    assert text.strip() and "\n" not in text, repr(text)


def _settings(n: int):
    deep = bool(os.environ.get("YOLOKIT_FUZZ_EXAMPLES"))  # a deeper local run explores at random
    return settings(max_examples=n, deadline=None, database=None, derandomize=not deep,
                    suppress_health_check=list(HealthCheck))  # fmt: skip


# --- seeds ----------------------------------------------------------------------------------------------------------
def _reference_seed(folder: Path) -> tuple[bytes, dict[str, bytes]]:
    """The mini reference checkpoint: its data.pkl and the other archive entries."""
    from foreign_helpers import fake_torch_save, mini_checkpoint, read_entries

    entries = read_entries(fake_torch_save(mini_checkpoint(), folder / "ref.pt"))
    name = next(n for n in entries if n.endswith("/data.pkl"))
    return entries.pop(name), {"name": name, **entries}


def _native_seed(folder: Path) -> tuple[bytes, dict[str, bytes]]:
    from foreign_helpers import read_entries

    payload = {"yolokit_format": 1, "yolokit": {"format_version": 1},
               "metadata": {"names": {"0": "a"}, "spec": {"nc": 1}, "stride": [8, 16, 32]},
               "state_dict": {"w": torch.arange(6.0).reshape(2, 3), "n": torch.tensor(3)}}  # fmt: skip
    torch.save(payload, folder / "native.pt")
    entries = read_entries(folder / "native.pt")
    name = next(n for n in entries if n.endswith("/data.pkl"))
    return entries.pop(name), {"name": name, **entries}


def _safetensors_seed() -> bytes:
    from safetensors.torch import save

    meta = {"yolokit_format": "1", "names": json.dumps({"0": "a"}), "spec": json.dumps({"nc": 1})}
    return save({"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2).half()}, metadata=meta)


def _read(path: Path) -> None:
    from yolokit.weights.read import read_weights

    try:
        weights = read_weights(path)
    except YolokitError as error:
        _one_line(error)
        return
    assert all(isinstance(t, torch.Tensor) for t in weights.state_dict.values())
    assert isinstance(weights.metadata, dict)


# --- targets --------------------------------------------------------------------------------------------------------
def fuzz_pickles(n: int) -> int:
    """Mutated data.pkl of a reference and a native checkpoint, inside an otherwise valid archive."""
    from foreign_helpers import write_archive

    folder = Path(tempfile.mkdtemp())
    seeds = [_reference_seed(folder), _native_seed(folder)]

    @_settings(n)
    @given(st.sampled_from([0, 1]), st.data())
    def check(which, data):
        pkl, rest = seeds[which]
        entries = {k: v for k, v in rest.items() if k != "name"}
        entries[rest["name"]] = data.draw(mutated(pkl))
        _read(write_archive(folder / "fuzz.pt", entries))

    check()
    return n


def fuzz_files(n: int) -> int:
    """Mutated bytes of whole files: a torch archive (zip structure) and a safetensors file (header and data)."""
    folder = Path(tempfile.mkdtemp())
    from foreign_helpers import fake_torch_save, mini_checkpoint

    archive = fake_torch_save(mini_checkpoint(), folder / "seed.pt").read_bytes()
    safetensors = _safetensors_seed()
    header_end = 8 + int.from_bytes(safetensors[:8], "little")

    @_settings(n)
    @given(st.sampled_from(["zip", "safetensors-header", "safetensors"]), st.data())
    def check(kind, data):
        if kind == "zip":
            blob = data.draw(mutated(archive))
        else:
            blob = data.draw(mutated(safetensors, (0, header_end) if kind == "safetensors-header" else None))
        path = folder / ("fuzz.pt" if kind == "zip" else "fuzz.safetensors")
        path.write_bytes(blob)
        _read(path)

    check()
    return n


def fuzz_images(n: int) -> int:
    """Mutated PNG and JPEG bytes through the decoder: a (H, W, 3) uint8 image or a one-line SourceError."""
    import cv2

    from yolokit.data.image import decode_image

    rng = np.random.default_rng(0)
    picture = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    seeds = [cv2.imencode(ext, picture)[1].tobytes() for ext in (".png", ".jpg", ".bmp", ".tiff")]

    @_settings(n)
    @given(st.sampled_from(range(len(seeds))), st.data())
    def check(which, data):
        blob = data.draw(mutated(seeds[which]))
        try:
            image = decode_image(blob, "fuzz")
        except YolokitError as error:
            _one_line(error)
            return
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3

    check()
    return n


TARGETS = {"pickles": fuzz_pickles, "files": fuzz_files, "images": fuzz_images}


def run(name: str, n: int) -> int:
    """Run target ``name`` for ``n`` examples; returns ``n`` (raises on the first property violation)."""
    return TARGETS[name](n)

