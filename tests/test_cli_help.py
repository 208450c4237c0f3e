"""``yolokit MODE --help`` lists the keys a model mode takes outside its settings classes (``model``, ``trusted``,
predict's ``source``/``save``, export's ``register``/``registry``) with type, default and meaning, and every key the
help lists is one the mode accepts (and a typo of it is suggested)."""

import pytest

from yolokit.cli import MODEL_MODES, command_keys, main


def _rows(mode, capsys):
    assert main([mode, "--help"]) == 0
    lines = capsys.readouterr().out.splitlines()[3:]
    return {line.split()[0]: line.split(None, 3) for line in lines if line.startswith("  ")}


@pytest.mark.parametrize("mode", MODEL_MODES)
def test_trusted_is_in_every_model_mode_help(mode, capsys):
    rows = _rows(mode, capsys)
    assert rows["trusted"][:3] == ["trusted", "bool", "False"]
    assert "TorchScript" in rows["trusted"][3] and "its code runs" in rows["trusted"][3]
    assert list(rows)[:2] == ["model", "trusted"]  # the command's own keys come first


def test_export_help_lists_register_and_registry(capsys):
    rows = _rows("export", capsys)
    assert rows["register"][:3] == ["register", "str", '""'] and "registry" in rows["register"][3]
    assert rows["registry"][:2] == ["registry", "str"] and "YOLOKIT_REGISTRY" in rows["registry"][3]
    assert "register" not in _rows("val", capsys)  # only export takes them


class _Reached(Exception):
    """Raised in place of loading the model: every key and value of the command passed the CLI's checks."""


@pytest.mark.parametrize("mode", MODEL_MODES)
def test_every_command_key_is_accepted(mode, monkeypatch):
    import yolokit.cli

    def reached(model, task):
        raise _Reached(model)

    monkeypatch.setattr(yolokit.cli, "_load", reached)
    values = {"bool": "False", "str": "x"}
    for key, kind, _default, _meaning in command_keys(mode)[1:]:  # model= is given anyway
        words = [mode, "model=yolo26n.yaml", f"{key}={values[kind]}", *(["source=x.jpg"] * (mode == "predict"))]
        with pytest.raises(_Reached, match="yolo26n.yaml"):
            yolokit.cli.main(words)


def test_a_typo_of_trusted_is_suggested(capsys):
    assert main(["info", "model=yolo26n.yaml", "trustd=True"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'trusted'" in err and err.count("\n") == 1
