"""Class 1: no hostile file crashes the process. Pickles nesting a tuple a million levels deep (a dict key, a set
member, a frozenset member) are refused by the unpickler's depth bound before anything hashes them, in every entry
point (reading, inspect, YOLO) and for native ``.pt`` files too, which go through the same guarded unpickler."""

import pytest
from hostile_files import deep_pickle_archive
from security_helpers import ROOT, assert_refused, run_cases

from yolokit.weights import _foreign_pickle

FIXTURES = ROOT / "tests" / "fixtures"


@pytest.mark.slow
def test_deep_tuples_are_refused_before_hashing_in_every_entry_point(tmp_path):
    files = {f"{where}-{'native' if native else 'reference'}": deep_pickle_archive(
        tmp_path / f"{where}-{native}.pt", 1_000_000, where, native)
        for where in ("key", "set", "frozenset") for native in (False, True)}  # fmt: skip
    cases = {name: f"from yolokit.weights.read import read_weights\nresult = read_weights({str(p)!r})"
             for name, p in files.items()}  # fmt: skip
    path = str(files["key-reference"])
    cases["inspect"] = f"from yolokit.weights.inspect import inspect_weights\nresult = inspect_weights({path!r})"
    cases["inspect"] += "['error']"
    cases["YOLO"] = f"from yolokit import YOLO\nresult = YOLO({path!r})"
    cases["YOLO-native"] = f"from yolokit import YOLO\nresult = YOLO({str(files['set-native'])!r})"
    for name, outcome in run_cases(cases, timeout=120).items():
        assert outcome.kind != "crash", (name, outcome)
        if name == "inspect":  # inspect reports the refusal in its report (the 'error' row) rather than raising
            assert outcome.kind == "ok" and "nested more than" in outcome.result, outcome
            continue
        assert_refused(outcome, error="WeightsError", contains=f"nested more than {_foreign_pickle.MAX_NESTING}")


def test_nesting_just_under_the_bound_still_loads(tmp_path):
    from yolokit.weights.foreign import load_checkpoint

    depth = _foreign_pickle.MAX_NESTING - 2  # the dict holding it and the tuple of the first level count too
    ckpt = load_checkpoint(deep_pickle_archive(tmp_path / "ok.pt", depth, "key"))
    key = next(k for k in ckpt if isinstance(k, tuple))
    levels = 0
    while isinstance(key, tuple):
        key, levels = key[0], levels + 1
    assert levels == depth and ckpt[next(k for k in ckpt if isinstance(k, tuple))] == 2


def test_native_pt_never_reaches_torch_load(tmp_path, monkeypatch):
    import torch

    from yolokit.weights import load_weights, save_weights

    model = load_weights(FIXTURES / "yolo26-tiny-shapes.pt")
    path = save_weights(model, tmp_path / "w.pt")

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load must not read a weights file")

    monkeypatch.setattr(torch, "load", refuse)
    loaded = load_weights(path)
    expected = model.state_dict()
    assert list(loaded.state_dict()) == list(expected)
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
