"""Real processes: concurrent registrations number without gaps; a process killed mid-registration leaves nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from yolokit.registry import Registry
from yolokit.utils.io import sha256_file

HELPER = str(Path(__file__).with_name("registry_helpers.py"))


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}


@pytest.mark.slow  # four interpreters starting: 5-15 s on a loaded 2-core machine
def test_four_processes_register_forty_versions_without_gaps(tmp_path):
    from registry_helpers import distinct_onnx_files

    paths = distinct_onnx_files(tmp_path / "w", 40)  # valid weights whose registration needs no torch import
    registry, go = tmp_path / "registry", tmp_path / "go"  # a fresh registry: creation and migration race too
    children = [subprocess.Popen([sys.executable, HELPER, "register", str(go), str(registry), "demo",
                                  *map(str, paths[i * 10:(i + 1) * 10])], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=_env()) for i in range(4)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("go.ready.*"))) < 4 and time.monotonic() < deadline:  # all imported: start together
        time.sleep(0.05)
    go.touch()
    outputs = [child.communicate(timeout=120) for child in children]
    assert all(child.returncode == 0 for child in children), [err for _, err in outputs]
    refs = [line for out, _ in outputs for line in out.split()]
    assert sorted(refs, key=lambda r: int(r.split(":")[1])) == [f"demo:{n}" for n in range(1, 41)]
    versions = Registry(registry).history("demo")
    assert [v.number for v in versions] == list(range(1, 41))
    assert sorted(v.sha256 for v in versions) == sorted(sha256_file(p) for p in paths)  # nothing lost or doubled
    registered = {v.sha256 for v in versions}
    assert set(Registry(registry).store.iter_digests()) == registered


@pytest.mark.slow
def test_a_process_killed_between_blob_and_row_leaves_no_version(tmp_path):
    from registry_helpers import distinct_files

    first, second = distinct_files(tmp_path / "w", 2)
    reg = Registry(tmp_path / "registry")
    reg.register("demo", first)
    before = [(m.name, m.versions, m.latest) for m in reg.list()]
    marker = tmp_path / "stopped"
    child = subprocess.Popen([sys.executable, HELPER, "crash", str(reg.path), "demo", str(second), str(marker)],
                             env=_env(), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.exists(), child.stderr.read() if child.poll() is not None else "the child never stored the blob"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    orphan = sha256_file(second)
    assert reg.store.has(orphan)  # the blob made it to disk...
    assert [(m.name, m.versions, m.latest) for m in reg.list()] == before  # ...but no version is visible
    assert reg.find_sha256(orphan) == []
    report = reg.gc()
    assert report.removed == [orphan] and not reg.store.has(orphan)
    assert reg.register("demo", second).number == 2  # no gap, no half version in the way
