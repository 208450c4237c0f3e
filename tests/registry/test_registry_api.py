"""``Registry``: what a registration records, numbering, lineage, aliases and audit, tags, delete, gc, pull."""

from __future__ import annotations

import os

import pytest
from registry_helpers import files, reg, tiny_model  # noqa: F401 - fixtures

from yolokit.errors import RegistryError
from yolokit.utils.io import sha256_file


def test_register_records_the_file(reg, files):  # noqa: F811
    v = reg.register("demo", files.finetuned, tags={"team": "vision"}, note="first fine-tune")
    assert (v.ref, v.number, v.format, v.precision, v.task) == ("demo:1", 1, "safetensors", "fp32", "detect")
    assert v.sha256 == sha256_file(files.finetuned)
    assert v.file_size == files.finetuned.stat().st_size
    assert v.names == {0: "cat", 1: "dog", 2: "bird"}
    assert v.scale == "n" and v.architecture  # from the spec
    assert v.parameters == sum(p.numel() for p in tiny_model().parameters())  # BatchNorm statistics not counted
    assert v.metrics == {"map50": 0.61, "map": 0.42}  # from the weights' provenance
    assert v.train_args == {"epochs": 1, "lr0": 0.002}
    assert v.dataset_fingerprint == "f" * 64
    assert v.tags == {"team": "vision"} and v.note == "first fine-tune"
    assert v.created.endswith("Z") and v.user and v.host
    assert v.parent is None  # its parent_sha256 (the pretrained file) is not registered
    assert reg.store.path_for(v.sha256).read_bytes() == files.finetuned.read_bytes()


def test_precision_and_format_are_detected_from_content(reg, files):  # noqa: F811
    half = reg.register("demo", files.half)
    onnx = reg.register("demo", files.onnx)
    int8 = reg.register("demo", files.int8)
    assert (half.format, half.precision) == ("yolokit-pt", "fp16")
    assert (onnx.format, onnx.precision) == ("onnx", "fp32")
    assert (int8.format, int8.precision) == ("onnx", "int8")
    assert int8.names == onnx.names == {0: "cat", 1: "dog", 2: "bird"}
    assert int8.file_size < onnx.file_size / 2


def test_a_reference_checkpoint_is_read_through_the_safe_importer(reg, tmp_path):  # noqa: F811
    import shutil
    from pathlib import Path

    fixture = Path(__file__).parents[1] / "fixtures" / "yolo11-tiny-shapes.pt"
    v = reg.register("shapes", shutil.copy(fixture, tmp_path / "best.pt"))
    assert (v.format, v.precision) == ("ultralytics-pt", "fp16")  # the reference stores its EMA weights in fp16
    assert v.names == {0: "rectangle", 1: "ellipse", 2: "triangle"}
    assert (v.architecture, v.scale) == ("YOLO11n", "n")
    assert v.train_args  # the reference's train_args, through the importer's provenance


def test_anything_else_is_refused_with_one_line(reg, tmp_path, files):  # noqa: F811
    import torch
    from safetensors.torch import save_file

    junk = tmp_path / "notes.pt"
    junk.write_text("not weights")
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, plain)
    pickle = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(2)}, pickle)
    for path, why in ((junk, "unrecognised weights file"), (plain, "no yolokit metadata"),
                      (pickle, "plain torch pickle"), (tmp_path / "missing.pt", "not found")):
        with pytest.raises(RegistryError, match=why) as err:
            reg.register("demo", path)
        assert "\n" not in str(err.value)
    assert reg.list() == []  # nothing half-registered, not even the model name
    assert list(reg.store.iter_digests()) == []


def test_numbering_identical_bytes_and_bad_names(reg, files):  # noqa: F811
    a = reg.register("demo", files.pretrained)
    b = reg.register("demo", files.pretrained)  # the same bytes again: a new version, one blob
    other = reg.register("other", files.pretrained)
    assert [a.ref, b.ref, other.ref] == ["demo:1", "demo:2", "other:1"]
    assert list(reg.store.iter_digests()) == [a.sha256]
    for name in ("../evil", "a/b", "  ", "bad\x07name"):
        with pytest.raises(RegistryError, match="invalid model name"):
            reg.register(name, files.pretrained)


def test_parent_found_by_parent_sha256_and_relations_inferred(reg, files):  # noqa: F811
    pre = reg.register("demo", files.pretrained)
    ft = reg.register("demo", files.finetuned)  # its metadata names the pretrained sha256
    onnx = reg.register("demo", files.onnx, parent="demo:2")
    int8 = reg.register("demo", files.int8, parent=onnx.ref)
    half = reg.register("demo", files.half, parent="demo@latest", relation="converted")
    assert (ft.parent, ft.relation) == (pre.ref, "finetuned")
    assert (onnx.parent, onnx.relation) == ("demo:2", "exported")
    assert (int8.parent, int8.relation) == ("demo:3", "quantized")
    assert (half.parent, half.relation) == ("demo:4", "converted")
    with pytest.raises(RegistryError, match="needs a parent"):
        reg.register("demo", files.half, relation="finetuned")
    with pytest.raises(RegistryError, match="unknown relation"):
        reg.register("demo", files.half, parent="demo:1", relation="copied")
    with pytest.raises(RegistryError, match=r"demo:9 does not exist \(demo has versions 1, 2, 3, 4, 5\)"):
        reg.register("demo", files.half, parent="demo:9")


def test_lineage_ancestors_and_descendants(reg, files):  # noqa: F811
    from yolokit.registry.report import format_lineage

    reg.register("demo", files.pretrained)
    reg.register("demo", files.finetuned)
    reg.register("demo", files.onnx, parent="demo:2")
    reg.register("demo", files.int8, parent="demo:3")
    reg.register("demo", files.half, parent="demo:2")
    lineage = reg.lineage("demo:2")
    assert [v.ref for v in lineage.ancestors] == ["demo:1"]
    by_id = {v.id: v.ref for kids in lineage.children.values() for v in kids}
    tree = {by_id.get(k, "demo:2"): [c.ref for c in kids] for k, kids in lineage.children.items()}
    assert tree == {"demo:2": ["demo:3", "demo:5"], "demo:3": ["demo:4"], "demo:4": [], "demo:5": []}
    text = format_lineage(lineage).splitlines()
    assert text[0].startswith("demo:1 ")
    assert text[1].startswith("└─ [finetuned] demo:2 ") and text[1].endswith("<- this version")
    assert text[2].startswith("   ├─ [exported] demo:3 ")
    assert text[3].startswith("   │  └─ [quantized] demo:4 ")
    assert text[4].startswith("   └─ [converted] demo:5 ")


def test_alias_moves_are_audited_and_resolve(reg, files):  # noqa: F811
    reg.register("demo", files.pretrained)
    reg.register("demo", files.finetuned)
    reg.register("demo", files.half)
    reg.alias("demo:1", "production")
    reg.alias("demo:2", "production")
    reg.alias("demo:2", "production")  # no move, no entry
    reg.alias("demo:3", "production")
    reg.alias("demo:3", "staging")
    assert reg.resolve("demo@production").number == 3
    assert reg.resolve("demo").number == 3 and reg.resolve("demo@latest").number == 3
    moves = [(e.alias, e.from_number, e.to_number) for e in reg.audit("demo") if e.action == "alias"]
    assert moves == [("production", None, 1), ("production", 1, 2), ("production", 2, 3), ("staging", None, 3)]
    assert reg.unalias("demo", "staging") == 3
    assert reg.audit("demo")[-1].action == "unalias"
    with pytest.raises(RegistryError, match="demo has no alias 'staging' \\(aliases: production\\)"):
        reg.resolve("demo@staging")
    assert [(m.name, m.versions, m.latest, m.aliases) for m in reg.list()] == [("demo", 3, 3, {"production": 3})]


def test_tags_and_notes_change_without_a_new_version(reg, files):  # noqa: F811
    reg.register("demo", files.pretrained, tags={"a": 1})
    assert reg.tag("demo:1", b="two").tags == {"a": "1", "b": "two"}
    assert reg.set_note("demo:1", "baseline").note == "baseline"
    assert reg.resolve("demo").number == 1
    assert [e.action for e in reg.audit("demo")] == ["register", "tag", "note"]


def test_delete_is_refused_while_used_and_numbers_are_never_reused(reg, files):  # noqa: F811
    reg.register("demo", files.pretrained)
    reg.register("demo", files.finetuned)
    reg.alias("demo:1", "production")
    with pytest.raises(RegistryError, match=r"demo:1 is still used \(alias production, child demo:2\)"):
        reg.delete("demo:1")
    reg.delete("demo:1", force=True)
    child = reg.resolve("demo:2")
    assert child.parent == "demo:1" and child.parent_deleted  # lineage kept as text
    assert reg.register("demo", files.half).number == 3
    reg.delete("demo:3")
    assert [v.number for v in reg.history("demo")] == [2]
    assert reg.register("demo", files.half).number == 4  # 3 stays retired: NAME:N always means the same bytes
    actions = [(e.action, e.alias, e.from_number) for e in reg.audit("demo")]
    assert ("unalias", "production", 1) in actions and ("delete", None, 1) in actions


def test_gc_removes_only_unreferenced_blobs(reg, files):  # noqa: F811
    reg.register("demo", files.pretrained)
    reg.register("demo", files.half)
    reg.register("demo", files.half)  # same blob, two versions
    reg.delete("demo:2")
    dry = reg.gc(dry_run=True)
    assert dry.removed == [] and dry.kept == 2  # demo:3 still uses the fp16 blob
    reg.delete("demo:3")
    dry = reg.gc(dry_run=True)
    assert dry.removed == [sha256_file(files.half)] and reg.store.has(dry.removed[0])
    done = reg.gc()
    assert done.removed == dry.removed and done.freed_bytes == files.half.stat().st_size
    assert list(reg.store.iter_digests()) == [sha256_file(files.pretrained)]


def test_pull_verifies_and_writes_atomically(reg, files, tmp_path):  # noqa: F811
    v = reg.register("demo", files.finetuned)
    out = reg.pull("demo:1", tmp_path / "deploy" / "model.safetensors")
    assert out.read_bytes() == files.finetuned.read_bytes()
    (tmp_path / "dir").mkdir()
    assert reg.pull("demo", tmp_path / "dir") == tmp_path / "dir" / "demo-v1.safetensors"
    blob = reg.store.path_for(v.sha256)
    os.chmod(blob, 0o644)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    blob.write_bytes(bytes(data))
    target = tmp_path / "deploy2" / "model.safetensors"
    with pytest.raises(RegistryError, match="demo:1: its file .* was modified .* nothing written to"):
        reg.pull("demo:1", target)
    assert not target.exists() and list(target.parent.iterdir()) == []  # no temp file left either
    blob.unlink()
    with pytest.raises(RegistryError, match="demo:1: its file .* is missing"):
        reg.pull("demo:1", target)


def test_readers_on_an_empty_registry_create_nothing(tmp_path):
    from yolokit.registry import Registry

    empty = Registry(tmp_path / "nothing")
    assert empty.list() == []
    for call in (lambda: empty.resolve("demo"), lambda: empty.history("demo"), lambda: empty.audit("demo")):
        with pytest.raises(RegistryError, match="registry .* is empty"):
            call()
    assert empty.gc().removed == []
    assert not (tmp_path / "nothing").exists()


def test_an_alias_move_interrupted_before_its_audit_entry_leaves_the_old_alias(reg, files, monkeypatch):  # noqa: F811
    from yolokit.registry.registry import Registry

    reg.register("demo", files.pretrained)
    reg.register("demo", files.finetuned)
    reg.alias("demo:1", "production")

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # anything between the alias update and the audit insert

    monkeypatch.setattr(Registry, "_log", staticmethod(crash))
    with pytest.raises(KeyboardInterrupt):
        reg.alias("demo:2", "production")
    monkeypatch.undo()
    assert reg.resolve("demo@production").number == 1  # the move was rolled back with its audit entry
    assert [(e.action, e.to_number) for e in reg.audit("demo")][-1] == ("alias", 1)
