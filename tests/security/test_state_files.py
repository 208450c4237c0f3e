"""Training-state files (``RUN/weights/last_state.pt``, read on ``resume=``) are hostile input too: they go through
the restricted unpickler of native ``.pt`` files (torch's tensor globals only, nesting depth, zip member and storage
bounds), in a memory-capped child; each refusal is one line naming the file, nothing runs, nothing is allocated."""

import zipfile

import torch
from hostile_files import Call, Fake, deep_pickle_archive, fake_torch_save, set_declared_size
from security_helpers import assert_refused, run_cases

from yolokit.train.checkpoint import STATE_FORMAT


def _state(**values):
    return {"format": STATE_FORMAT, "version": 1, "epoch": 0, **values}


def test_hostile_state_files_are_refused_with_one_line_naming_the_file(tmp_path):
    marker = tmp_path / "ran"
    system = fake_torch_save(_state(hook=Call(Fake("posix", "system"), (f"touch {marker}",))), tmp_path / "system.pt")
    deep = deep_pickle_archive(tmp_path / "deep.pt", 1_000_000, "key", native=True)
    huge = tmp_path / "huge.pt"
    torch.save(_state(model={"w": torch.zeros(4)}), huge)
    with zipfile.ZipFile(huge) as archive:
        storage = next(name for name in archive.namelist() if "/data/" in name)
    set_declared_size(huge, storage, 2**31 - 1)  # 16 bytes in the file, 2 GB declared
    files = {"system": system, "deep": deep, "huge": huge}
    cases = {name: f"from yolokit.train.checkpoint import load_state\nresult = load_state({str(path)!r})"
             for name, path in files.items()}  # fmt: skip
    outcomes = run_cases(cases)
    expected = {"system": "refused global 'posix.system'", "deep": "nested more than 100",
                "huge": "refused before reading"}  # fmt: skip
    for name, outcome in outcomes.items():
        assert_refused(outcome, error="ConfigError", contains=expected[name])
        assert f"cannot read the training state {files[name]}" in outcome.message, outcome
    assert not marker.exists()


def test_a_real_state_file_reads_back_equal(tmp_path):
    from yolokit.train.checkpoint import capture_rng, load_state, save_state

    state = {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "rng": capture_rng(), "betas": (0.9, 0.999),
             "given": ["epochs"], "scaler": None}  # fmt: skip
    save_state(tmp_path / "s.pt", state)
    loaded = load_state(tmp_path / "s.pt")
    assert torch.equal(loaded["model"]["w"], state["model"]["w"]) and loaded["betas"] == (0.9, 0.999)
    assert torch.equal(loaded["rng"]["torch"], state["rng"]["torch"]) and loaded["scaler"] is None
