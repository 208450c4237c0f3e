"""Running a loader as an attacker's file would be run: in a child process with an address-space limit and a timeout.

``run_cases({name: code}, headroom_mb=...)`` starts ``python -c``, imports torch and yolokit there, then lowers the
child's ``RLIMIT_AS`` to what it already maps plus ``headroom_mb`` and runs each ``code`` (which may define
``result``) in turn.
The parent gets an :class:`Outcome`: the exception's type and message (and whether it is a ``YolokitError`` on one
line), a crash signal, a timeout, or the result's repr. So a refusal that comes *after* a multi-GB allocation shows
up as a ``MemoryError``/``RuntimeError`` (not a ``YolokitError``) or a crash, and a hang as a timeout.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS_TESTS = ROOT / "tests" / "weights"
sys.path.insert(0, str(WEIGHTS_TESTS))  # foreign_helpers: builders of hand-made torch archives

_PRELUDE = """
import gc, json, os, resource, sys, traceback
sys.path.insert(0, {weights!r})
import numpy, torch, yolokit, yolokit.weights.read, yolokit.weights.inspect, yolokit.data.dataset, yolokit.models
import yolokit.data.image, PIL.Image, cv2
from yolokit.errors import YolokitError
torch.set_num_threads(1)
mapped = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
resource.setrlimit(resource.RLIMIT_AS, (mapped + {headroom} * 2**20, resource.RLIM_INFINITY))
CASES = {cases!r}
for name, code in CASES.items():
    scope = {{}}
    try:
        exec(code, scope)
        out = {{"kind": "ok", "result": repr(scope.get("result"))[:500]}}
    except YolokitError as exc:
        out = {{"kind": "yolokit", "type": type(exc).__name__, "message": str(exc)}}
    except BaseException as exc:
        out = {{"kind": "other", "type": type(exc).__name__, "message": str(exc)[:500],
               "traceback": traceback.format_exc()[-3000:]}}
    del scope
    gc.collect()
    print("OUTCOME " + json.dumps({{"name": name, **out}}), flush=True)
"""


@dataclasses.dataclass
class Outcome:
    """What the child did: ``kind`` is ok / yolokit / other / crash / timeout."""

    kind: str
    type: str = ""
    message: str = ""
    result: str = ""
    detail: str = ""

    @property
    def one_line_refusal(self) -> bool:
        """A ``YolokitError`` whose message is one line."""
        return self.kind == "yolokit" and "\n" not in self.message.strip() and bool(self.message.strip())


def run_cases(cases: dict[str, str], *, headroom_mb: int = 400, timeout: float = 90.0,
              cwd: str | Path | None = None) -> dict[str, Outcome]:  # fmt: skip
    """Run each case (Python statements, may define ``result``) in one child under the memory cap, in order.

    A crash or timeout is reported for the case that was running and every case after it."""
    script = _PRELUDE.format(weights=str(WEIGHTS_TESTS), headroom=int(headroom_mb),
                             cases={k: textwrap.dedent(v) for k, v in cases.items()})  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    try:
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout,
                              env=env, cwd=cwd)  # fmt: skip
        stdout, failure = proc.stdout, None
        if proc.returncode < 0:
            failure = Outcome("crash", type=f"signal {-proc.returncode}", detail=proc.stderr[-2000:])
        elif proc.returncode:
            failure = Outcome("other", type=f"exit {proc.returncode}", detail=proc.stderr[-3000:])
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        failure = Outcome("timeout", detail=f"no answer within {timeout:g} s")
    outcomes: dict[str, Outcome] = {}
    for line in stdout.splitlines():
        if line.startswith("OUTCOME "):
            data = json.loads(line[len("OUTCOME "):])
            outcomes[data["name"]] = Outcome(data["kind"], data.get("type", ""), data.get("message", ""),
                                             data.get("result", ""), data.get("traceback", ""))  # fmt: skip
    for name in cases:
        outcomes.setdefault(name, failure or Outcome("other", detail="no outcome"))
    return outcomes


def run_limited(code: str, **kwargs) -> Outcome:
    """One case: see :func:`run_cases`."""
    return run_cases({"case": code}, **kwargs)["case"]


def assert_refused(outcome: Outcome, *, error: str | None = None, contains: str = "") -> None:
    """The child refused with a one-line ``YolokitError`` (of class ``error`` when given) mentioning ``contains``."""
    assert outcome.one_line_refusal, outcome
    if error is not None:
        assert outcome.type == error, outcome
    assert contains.lower() in outcome.message.lower(), outcome


def png_header(width: int, height: int) -> bytes:
    """A valid PNG of ``width`` x ``height`` 8-bit gray pixels whose IDAT holds only a few (truncated) rows: what a
    decompression bomb's header looks like to a decoder, in a few hundred bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
