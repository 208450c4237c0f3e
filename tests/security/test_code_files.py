"""TorchScript files carry code: ``torch.jit.load`` runs a module's ``__setstate__``, ``forward`` runs on each call.
A file yolokit did not export here is refused before torch sees it (``UntrustedCodeError``, one line, the marker its
code would write never appears) in every entry point; ``trusted=True`` loads it, after the archive checks (names,
sizes, constants.pkl through the restricted unpickler), which refuse hostile archives before ``torch.jit.load``."""

import subprocess
import sys

import pytest
from hostile_files import set_declared_size
from hostile_torchscript import constants_calling_system, hostile_torchscript, member_names, replace_member
from security_helpers import ROOT, assert_refused, run_cases

from yolokit.errors import UntrustedCodeError
from yolokit.export.torchscript import export_torchscript, load_torchscript
from yolokit.weights import load_weights

FIXTURE = ROOT / "tests" / "fixtures" / "yolov8-tiny-shapes.pt"


@pytest.fixture()
def evil(tmp_path):
    marker = tmp_path / "marker"
    return hostile_torchscript(tmp_path / "evil.torchscript", marker), marker


def _markers(marker):
    return sorted(p.name for p in marker.parent.glob(f"{marker.name}.*"))


def test_untrusted_torchscript_is_refused_in_every_entry_point_and_nothing_runs(evil, tmp_path):
    path, marker = evil
    renamed = tmp_path / "weights.pt"  # detected by content, not by name
    renamed.write_bytes(path.read_bytes())
    forged = hostile_torchscript(tmp_path / "forged.torchscript", marker,  # claims to be yolokit's, with a hash
                                 {"yolokit_version": "1.0", "sha256": "0" * 64, "trusted": True})  # fmt: skip
    load = "from yolokit.export.torchscript import load_torchscript\nresult = load_torchscript({!r})"
    cases = {
        "YOLO": f"from yolokit import YOLO\nresult = YOLO({str(path)!r})",
        "YOLO-renamed": f"from yolokit import YOLO\nresult = YOLO({str(renamed)!r})",
        "load_torchscript": load.format(str(path)),
        "bytes": f"from yolokit.export.torchscript import load_torchscript\n"
                 f"result = load_torchscript(open({str(path)!r}, 'rb').read())",
        "backend": f"from yolokit.backends.torchscript_backend import TorchScriptBackend\n"
                   f"result = TorchScriptBackend({str(path)!r})",
        "forged-metadata": load.format(str(forged)),
    }  # fmt: skip
    for outcome in run_cases(cases).values():
        assert_refused(outcome, error="UntrustedCodeError", contains="carries code that runs when it is loaded")
    assert _markers(marker) == []


def test_trusted_true_runs_it_so_the_file_really_is_hostile(evil, tmp_path):
    path, marker = evil
    other = hostile_torchscript(tmp_path / "second.torchscript", tmp_path / "other")
    outcomes = run_cases({"load_torchscript": "from yolokit.export.torchscript import load_torchscript\n"
                                             f"module, _ = load_torchscript({str(path)!r}, trusted=True)",
                          "YOLO": f"from yolokit import YOLO\nresult = YOLO({str(other)!r}, trusted=True).names"})
    assert all(outcome.kind == "ok" for outcome in outcomes.values()), outcomes
    assert _markers(marker) == ["marker.load"]  # __setstate__ ran on load (forward was never called)
    assert _markers(tmp_path / "other") == ["other.load"]


def test_cli_refuses_with_one_line_and_trusted_key_opts_in(evil, tmp_path):
    path, marker = evil
    image = ROOT / "tests" / "fixtures" / "images" / "00001.jpg"
    command = [sys.executable, "-m", "yolokit", "predict", f"model={path}", f"source={image}",
               f"project={tmp_path / 'runs'}"]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "trusted=True" in proc.stderr and _markers(marker) == []
    subprocess.run([*command, "trusted=True"], capture_output=True, text=True, timeout=120)
    assert "marker.load" in _markers(marker)  # the opt-in loaded it (its output is no detector's: predict fails)


def test_trusted_load_still_checks_the_archive_before_torch(evil, tmp_path):
    path, marker = evil
    system = constants_calling_system(path, tmp_path / "system.torchscript", f"touch {marker}.system")
    root = member_names(path)[0].split("/")[0]
    huge = replace_member(path, tmp_path / "huge.torchscript", "/constants.pkl", None)
    set_declared_size(huge, f"{root}/constants.pkl", 2**31 - 1)  # a few KB in the file, 2 GB declared
    escape = replace_member(path, tmp_path / "escape.torchscript", "/version", b"3\n", f"{root}/../../version")
    stray = replace_member(path, tmp_path / "stray.torchscript", "/version", b"3\n", f"{root}/payload.so")
    load = "from yolokit.export.torchscript import load_torchscript\nresult = load_torchscript({!r}, trusted=True)"
    cases = {name: load.format(str(p)) for name, p in
             {"system": system, "huge": huge, "escape": escape, "stray": stray}.items()}  # fmt: skip
    outcomes = run_cases(cases)
    assert_refused(outcomes["system"], error="UnsafeWeightsError", contains="posix.system")
    assert_refused(outcomes["huge"], error="WeightsError", contains="refused before reading")
    for name in ("escape", "stray"):
        assert_refused(outcomes[name], error="WeightsError", contains="which a TorchScript archive")
    assert _markers(marker) == []


def test_yolokit_exports_load_without_opt_in_and_a_changed_byte_is_untrusted(tmp_path):
    own = export_torchscript(load_weights(FIXTURE), tmp_path / "own.torchscript", imgsz=64)
    module, meta = load_torchscript(own)  # recorded when written: trusted without the flag
    assert meta["imgsz"] == [64, 64]
    changed = replace_member(own, tmp_path / "changed.torchscript", "/extra/yolokit.json",
                             b'{"names": {"0": "x"}, "stride": [8]}')  # fmt: skip
    with pytest.raises(UntrustedCodeError):
        load_torchscript(changed)
    outcome = run_cases({"own": f"from yolokit import YOLO\nresult = YOLO({str(own)!r}).names"})["own"]
    assert outcome.kind == "ok" and "rectangle" in outcome.result, outcome  # another process: the on-disk record
