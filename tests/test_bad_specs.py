"""A corpus of bad specs: every error the front end can give, with its position.

Each ``tests/bad/NNN_name.yaml`` is an otherwise valid spec with one problem and starts
with one header line per expected error::

    # error: LINE:COL: <substring of the expected message>

The position is where the offending token *is* (checked by hand), not merely where
netspec happens to report it. Every problem must come out as one ``FILE:LINE:COL:
message`` line on stderr, exit status 2, and never a traceback.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from netspec.cli import main

ROOT = Path(__file__).resolve().parent.parent
BAD_DIR = Path(__file__).resolve().parent / "bad"
BAD = sorted(BAD_DIR.glob("*.yaml"))
HEADER = re.compile(r"# error: (\d+):(\d+): (.+)")
GOOD_SPEC = ROOT / "specs" / "resnet18.yaml"


def expected_errors(path: Path) -> list[tuple[int, int, str]]:
    """The ``# error:`` header lines at the top of a bad spec."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = HEADER.fullmatch(line.rstrip())
        if not m:
            break
        out.append((int(m[1]), int(m[2]), m[3]))
    return out


def run_in_process(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def check_report(file: str, code: int, err: str, want: list[tuple[int, int, str]]) -> None:
    assert "Traceback" not in err, err
    assert code == 2, f"exit status {code}, stderr:\n{err}"
    lines = err.splitlines()
    line_re = re.compile(re.escape(file) + r":(\d+):(\d+): (.+)")
    got = []
    for line in lines:
        m = line_re.fullmatch(line)
        assert m, f"not a FILE:LINE:COL: message line: {line!r}"
        got.append((int(m[1]), int(m[2]), m[3]))
    assert len(got) == len(want), (
        f"expected {len(want)} error line(s), got {len(got)}:\n{err}")
    for (line, col, msg), (w_line, w_col, w_msg) in zip(got, want, strict=True):
        assert (line, col) == (w_line, w_col), (
            f"reported at {line}:{col}, expected {w_line}:{w_col}: {msg}")
        assert w_msg in msg, f"expected {w_msg!r} in the message {msg!r}"


def test_corpus_is_complete() -> None:
    assert len(BAD) >= 60
    names = [p.name for p in BAD]
    assert all(re.fullmatch(r"\d{3}_[a-z0-9_]+\.yaml", n) for n in names), names
    numbers = [n[:3] for n in names]
    assert len(set(numbers)) == len(numbers), "two bad specs share a number"
    for p in BAD:
        assert expected_errors(p), f"{p.name} has no '# error: LINE:COL: message' header"


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_spec(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_in_process(capsys, "validate", str(path))
    assert out == ""
    check_report(str(path), code, err, expected_errors(path))


SUBPROCESS = ["003_yaml_tab_indent", "007_empty_file", "017_billion_laughs", "018_nesting_too_deep",
              "033_unknown_kind", "062_expr_division_by_zero", "078_block_cycle",
              "108_two_unknown_kinds"]


@pytest.mark.parametrize("stem", SUBPROCESS)
def test_bad_spec_subprocess(stem: str) -> None:
    path = BAD_DIR / f"{stem}.yaml"
    proc = subprocess.run([sys.executable, "-m", "netspec", "validate", str(path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    # positions and messages are test_bad_spec's business; here: the process and the format
    lines = proc.stderr.splitlines()
    assert len(lines) == len(expected_errors(path)), proc.stderr
    for line in lines:
        assert re.fullmatch(re.escape(str(path)) + r":\d+:\d+: .+", line), line


PARAMS_TOO = ["011_dup_key_in_layer", "024_unknown_top_key", "049_conv_groups_not_dividing",
              "060_expr_undefined_var", "084_block_body_shape_error", "108_two_unknown_kinds"]


@pytest.mark.parametrize("stem", PARAMS_TOO)
def test_params_reports_what_validate_reports(stem: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = str(BAD_DIR / f"{stem}.yaml")
    v_code, _, v_err = run_in_process(capsys, "validate", path)
    p_code, p_out, p_err = run_in_process(capsys, "params", path)
    assert (p_code, p_out, p_err) == (v_code, "", v_err)
    assert p_code == 2 and p_err


def test_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"netspec: 1\nname: caf\xe9\ninput: [3, 32, 32]\nlayers: [relu]\n")
    code, _, err = run_in_process(capsys, "validate", str(path))
    check_report(str(path), code, err, [(2, 10, "not UTF-8 text: byte 0xe9")])


def test_not_utf8_subprocess(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"netspec: 1\nname: t\ninput: [3, 32, 32]\nlayers:\n  - \xff\xfe\n")
    proc = subprocess.run([sys.executable, "-m", "netspec", "validate", str(path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    check_report(str(path), proc.returncode, proc.stderr, [(5, 5, "byte 0xff")])


def test_file_too_large(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("netspec: 1\n" + "# padding\n" * 110_000, encoding="utf-8")
    code, _, err = run_in_process(capsys, "validate", str(path))
    check_report(str(path), code, err, [(1, 1, "the limit is 1,048,576")])


def usage_error(code: int, err: str, *parts: str) -> None:
    assert "Traceback" not in err
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    for part in parts:
        assert part in lines[0]


def test_set_unknown_var(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_in_process(capsys, "validate", str(GOOD_SPEC), "--set", "widht=32")
    assert out == ""
    usage_error(code, err, "--set widht", "no var 'widht'", "(did you mean 'width'?)")


def test_set_unknown_var_params_subprocess() -> None:
    proc = subprocess.run([sys.executable, "-m", "netspec", "params", str(GOOD_SPEC),
                           "--set", "clases=10"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    usage_error(proc.returncode, proc.stderr, "--set clases", "(did you mean 'classes'?)")


def test_set_without_value(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_in_process(capsys, "validate", str(GOOD_SPEC), "--set", "width")
    usage_error(code, err, "expected NAME=VALUE")


def test_set_bad_expression(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_in_process(capsys, "validate", str(GOOD_SPEC), "--set", "width=$w // 0")
    usage_error(code, err, "--set width=", "unknown variable '$w'")


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.yaml"
    code, out, err = run_in_process(capsys, "validate", str(path))
    assert out == ""
    usage_error(code, err, str(path), "no such file")


def test_missing_file_subprocess(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "netspec", "validate", "nope.yaml"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    usage_error(proc.returncode, proc.stderr, "nope.yaml", "no such file")


def test_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_in_process(capsys, "validate", str(tmp_path))
    usage_error(code, err, "is a directory")
