import hashlib
import os

import pytest

from yolokit.utils import dist
from yolokit.utils.io import atomic_open, atomic_write_json, atomic_write_text, increment_dir, sha256_file


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "a" / "file.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]  # no temp files left behind


def test_failed_atomic_write_keeps_old_content_and_leaves_no_temp(tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_open(target, "wb") as handle:
        handle.write(b"partial")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["file.bin"]


def test_atomic_write_json_and_sha256(tmp_path):
    path = atomic_write_json(tmp_path / "m.json", {"a": 1})
    assert path.read_text() == '{\n  "a": 1\n}\n'
    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_increment_dir_numbers_like_runs_predict(tmp_path):
    base = tmp_path / "runs" / "predict"
    assert increment_dir(base) == base
    assert increment_dir(base) == base.with_name("predict2")
    assert increment_dir(base) == base.with_name("predict3")
    assert increment_dir(base, exist_ok=True) == base


def test_rank_helpers_read_torchrun_environment(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert (dist.get_rank(), dist.get_world_size(), dist.get_local_rank()) == (3, 4, 1)
    assert not dist.is_main_process()
    monkeypatch.delenv("RANK")
    assert dist.is_main_process()


def test_atomic_write_gives_umask_permissions_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "perm.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
