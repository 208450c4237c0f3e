import pytest

from yolokit import __version__
from yolokit.cli import main


def test_version(capsys):
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == __version__


def test_help_lists_modes(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for mode in ("predict", "val", "inspect", "convert", "data synth", "info"):
        assert mode in out


def test_unknown_mode_is_one_line_error_exit_2(capsys):
    assert main(["predcit"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'predict'" in err


@pytest.mark.parametrize("argv,message", [
    (["info"], "info needs model="),
    (["info", "model=yolo26n.yaml", "detaild=True"], "did you mean 'detailed'"),
    (["predict", "model=yolo26n.yaml"], "predict needs source="),
    (["predict", "model=yolo26n.yaml", "source=x.jpg", "cnf=0.2"], "did you mean 'conf'"),
    (["val", "model=yolo26n.yaml", "dta=x.yaml"], "did you mean 'data'"),
    (["info", "yolo26n.yaml"], "expected key=value"),
])
def test_argument_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
