"""Small things a new user meets in the first hour: plurals, notes that apply, a var's
did-you-mean as the spec writes it, a Python caller's message about vars."""

from __future__ import annotations

from pathlib import Path

import pytest

import netspec
from netspec.cli import main
from netspec.errors import VarError

ROOT = Path(__file__).resolve().parent.parent
ONE_LAYER = "netspec: 1\nname: one\ninput: [4]\nlayers:\n  - linear: {out: 1, bias: false}\n"


def test_one_layer_is_singular(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "one.yaml"
    spec.write_text(ONE_LAYER)
    assert main(["validate", str(spec)]) == 0
    out = capsys.readouterr().out
    assert ", 1 layer, " in out and "4 parameters" in out


def test_buffer_note_only_with_buffers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["params", str(ROOT / "specs/mlp.yaml")]) == 0
    mlp = capsys.readouterr().out
    assert "BN running" not in mlp
    assert main(["params", str(ROOT / "specs/resnet18.yaml")]) == 0
    assert "BN running mean and variance" in capsys.readouterr().out


def test_var_suggestion_keeps_its_dollar(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "v.yaml"
    spec.write_text("netspec: 1\nname: v\ninput: [4]\nvars: {width: 8}\n"
                    "layers:\n  - linear: {out: $widht}\n")
    assert main(["validate", str(spec)]) == 2
    assert "(did you mean '$width'?)" in capsys.readouterr().err


def test_python_caller_hears_about_vars_and_the_cli_about_set(
        capsys: pytest.CaptureFixture[str]) -> None:
    spec = ROOT / "specs/resnet18.yaml"
    with pytest.raises(VarError) as info:
        netspec.load(spec, clases=10)
    assert str(info.value).startswith("var clases: the spec has no var 'clases'")
    assert "--set" not in str(info.value)
    with pytest.raises(VarError, match=r"^var classes=\$nope: "):
        netspec.load(spec, classes="$nope")
    assert main(["params", str(spec), "--set", "clases=10"]) == 2
    assert capsys.readouterr().err.startswith("--set clases: the spec has no var 'clases'")
