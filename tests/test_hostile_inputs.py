"""Hostile inputs (issue 12, the input half): every one ends fast, in one line, exit 2.

The positioned ones are in the bad-spec corpus (tests/bad/132_… onwards: bounded sizes,
finite floats, names ending in a newline, indentation, did-you-mean); here are the ones
without a spec position — special files, ``--set`` values — and the rules that keep
work bounded: the pool rule's closed form, dense blocks in linear work, Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

import netspec
from netspec.cli import main
from netspec.kinds.base import ShapeError
from netspec.kinds.merge import Concat
from netspec.kinds.pool import MaxPool

ROOT = Path(__file__).resolve().parent.parent
RESNET18 = str(ROOT / "specs" / "resnet18.yaml")


def refused(capsys: pytest.CaptureFixture[str], message: str, *argv: str) -> None:
    """The command exits 2, within a few seconds, with exactly ``message`` on stderr."""
    start = time.perf_counter()
    code = main(list(argv))
    err = capsys.readouterr().err
    assert (code, err) == (2, message + "\n")
    assert time.perf_counter() - start < 10


# ------------------------------------------------------------------ special files
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_is_refused_unread(capsys: pytest.CaptureFixture[str], device: str) -> None:
    if not os.path.exists(device):
        pytest.skip(f"no {device} here")
    refused(capsys, f"{device}: is a character device, not a regular file; a spec must be "
            "a file", "validate", device)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_fifo_is_refused_without_waiting_for_a_writer(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    refused(capsys, f"{fifo}: is a named pipe (FIFO), not a regular file; a spec must be "
            "a file", "params", str(fifo))


def test_a_spec_is_read_to_the_limit_and_no_further(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The size is judged on the bytes read (at most the limit + 1), not on stat():
    a file that grows after stat() — or reports a wrong size — is still refused."""
    import netspec.yaml_loader as yl

    spec = tmp_path / "big.yaml"
    spec.write_text("netspec: 1\n" + "#" * 200 + "\n")
    reads: list[int] = []
    real_fdopen = os.fdopen

    class Counting:
        def __init__(self, f: Any) -> None:
            self.f = f

        def __enter__(self) -> Counting:
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()

        def fileno(self) -> int:
            return int(self.f.fileno())

        def read(self, n: int) -> bytes:
            reads.append(n)
            return bytes(self.f.read(n))

    monkeypatch.setattr(yl.os, "fdopen", lambda fd, mode: Counting(real_fdopen(fd, mode)))
    monkeypatch.setattr(yl, "MAX_FILE_BYTES", 100)
    # stat() says 212 bytes: refused before it is opened
    refused(capsys, f"{spec}:1:1: spec file is 212 bytes; the limit is 100",
            "validate", str(spec))
    assert reads == []
    # a file stat() cannot size (it grew, or /proc): the read stops at the limit + 1
    real_stat = yl.FsPath.stat
    monkeypatch.setattr(yl.FsPath, "stat",
                        lambda self: os.stat_result((*real_stat(self)[:6], 0, 0, 0, 0)))
    refused(capsys, f"{spec}:1:1: spec file is larger than 100 bytes, the limit",
            "validate", str(spec))
    assert reads == [101]


# ------------------------------------------------------------------ --set values
@pytest.mark.parametrize(("text", "where"), [
    ("- " * 50_000 + "a\n", "1:131"),
    ("a: " + "[" * 50_000 + "]" * 50_000 + "\n", "1:68"),
    ("a: " + "{b: " * 50_000 + "1" + "}" * 50_000 + "\n", "1:260"),
], ids=["dashes", "brackets", "braces"])
def test_a_spec_nested_50000_deep_is_one_line_not_a_crash(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, where: str) -> None:
    """100 kB of '- - -' or '[[[' once overflowed libyaml's recursive composer (a
    segfault, exit 139); the depth is judged from the parse events first."""
    spec = tmp_path / "deep.yaml"
    spec.write_text(text)
    refused(capsys, f"{spec}:{where}: nested deeper than 64 levels", "validate", str(spec))


@pytest.mark.parametrize(("value", "message"), [
    ("9" * 5000, "--set width: the number is too large (limit 1e+15)"),
    ("9" * 4000, "--set width: the number is too large (limit 1e+15)"),
    ("[" * 2000 + "]" * 2000, "--set width: the value is nested more than 32 deep"),
    (".inf", "--set width: inf is not a finite number"),
    (".nan", "--set width: nan is not a finite number"),
    ("x" * 10_001, "--set width: the value is longer than 10,000 characters"),
], ids=["5000_digits", "4000_digits", "2000_deep", "inf", "nan", "10001_chars"])
def test_hostile_set_values(capsys: pytest.CaptureFixture[str], value: str,
                            message: str) -> None:
    refused(capsys, message, "validate", RESNET18, "--set", f"width={value}")


def test_a_bad_set_value_is_blamed_on_the_set(capsys: pytest.CaptureFixture[str]) -> None:
    """Where the value is used keeps its position; the message says where it came from."""
    refused(capsys, f"{RESNET18}:26:17: conv: out: input should be greater than or equal "
            "to 1 (got 0) — from --set width=0", "validate", RESNET18, "--set", "width=0")
    # an error the spec has of its own, with or without --set, is not blamed on it
    bad = str(ROOT / "tests" / "bad" / "039_conv_out_zero.yaml")
    code = main(["validate", bad])
    alone = capsys.readouterr().err
    assert code == 2 and "--set" not in alone


# ------------------------------------------------------------------ bounded work
def _pool_reference(n: int, k: int, s: int, p: int, d: int, ceil: bool) -> object:
    """The rule as it was, looping over every position of every window."""
    span = n + 2 * p - d * (k - 1) - 1
    o = (-(-span // s) if ceil else span // s) + 1
    if ceil and (o - 1) * s >= n + p:
        o -= 1
    if o < 1 or span < 0:
        return "too large"
    for i in range(min(o, -(-p // s) + 1)):
        if not any(0 <= i * s - p + j * d < n for j in range(k)):
            return i
    return o


def test_the_pool_rule_in_closed_form_is_the_loop_it_replaced() -> None:
    for n in range(1, 7):
        for k in range(1, 6):
            for s in range(1, 4):
                for p in range(k // 2 + 1):
                    for d in range(1, 5):
                        for ceil in (False, True):
                            want = _pool_reference(n, k, s, p, d, ceil)
                            pool = MaxPool(k=[k, 1], stride=[s, 1], pad=[p, 0],
                                           dilation=[d, 1], ceil=ceil)
                            try:
                                got: object = pool.out_shape([(1, n, 1)])[1]
                            except ShapeError as e:
                                got = "too large" if "larger" in str(e) else \
                                    int(str(e).split()[1])
                            assert got == want, (n, k, s, p, d, ceil)


def test_the_projection_stride_in_closed_form_is_the_loop_it_replaced() -> None:
    from netspec.structures import _stride_between

    def loop(n_in: int, n_out: int) -> int | None:
        return next((s for s in range(1, n_in + 1) if (n_in - 1) // s + 1 == n_out), None)

    for n_in in range(1, 80):
        for n_out in range(0, 90):
            assert _stride_between(n_in, n_out) == loop(n_in, n_out), (n_in, n_out)
    assert _stride_between(16_777_216, 1) == 16_777_216


def test_a_pool_window_of_1e15_is_judged_at_once() -> None:
    start = time.perf_counter()
    g = netspec.loads("netspec: 1\nname: t\ninput: [1, 4, 4]\nlayers:\n"
                      "  - maxpool: {k: 1000000000000000, pad: 500000000000000}\n")
    assert g.output_shape == (1, 1, 1)  # (the loop it replaced took 5e14 steps here)
    assert time.perf_counter() - start < 2


def test_a_dense_block_is_a_chain_of_two_input_merges(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Merge i joins merge i-1 and layer i's output, so the Graph has O(n) edges (every
    merge listing every earlier output made n = 10,000 a Graph of 5·10⁷ edges, whose
    torch code and ONNX file could not be built); the values are the concatenation of
    the input and every output so far, which the shapes and counts show."""
    seen: list[int] = []
    rule = Concat.out_shape
    monkeypatch.setattr(Concat, "out_shape",
                        lambda self, inputs: seen.append(len(inputs)) or rule(self, inputs))
    g = netspec.loads("netspec: 1\nname: t\ninput: [8]\nlayers:\n"
                      "  - dense: {n: 300, body: [linear: {out: 2}]}\n")
    assert seen == [2] * 300
    merges = [n for n in g.layers if n.op == "concat"]
    layers = [n.name for n in g.layers if n.op == "linear"]
    assert [m.inputs for m in merges] == list(zip(["input", *(m.name for m in merges[:-1])],
                                                  layers, strict=True))
    assert [m.shape for m in merges] == [(8 + 2 * (i + 1),) for i in range(300)]
    assert g.params().params == sum((8 + 2 * i) * 2 + 2 for i in range(300))


# ------------------------------------------------------------------ the test suite
def test_ctrl_c_typed_during_a_command_stops_the_caller(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """In a test run, a Ctrl-C the user types must stop the run, not become exit 130 of
    one command (then Hypothesis would go on to its next example)."""
    import netspec.commands.validate as v

    def typed(args: object) -> int:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
        return 0

    monkeypatch.setattr(v, "run", typed)
    # Python's handler, as in a terminal: a test run started as a background job
    # inherits SIGINT ignored, and then no Ctrl-C could reach it at all
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            main(["validate", RESNET18])
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        # as the netspec program (no argv given: sys.argv), Ctrl-C ends it with status 130
        monkeypatch.setattr("sys.argv", ["netspec", "validate", RESNET18])
        assert main() == 130
        assert capsys.readouterr().err == "netspec: interrupted\n"
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, inherited)


def test_hypothesis_runs_the_same_examples_everywhere() -> None:
    if os.environ.get("HYPOTHESIS_PROFILE", "ci") != "ci":
        pytest.skip("another Hypothesis profile was asked for")
    assert settings.default.derandomize
    assert settings.default.database is None
    assert settings.default.deadline is None


@pytest.mark.parametrize(("argv", "start"), [
    (["export", "{spec}", "-o", "{out}", "--opset", "abc"],
     "netspec export: argument --opset: invalid int value: 'abc'"),
    ([], "netspec: the following arguments are required: COMMAND"),
    (["validate"], "netspec validate: the following arguments are required: spec"),
    (["validate", "{spec}", "--bogus"], "netspec: unrecognized arguments: --bogus"),
    (["export", "{spec}", "-o", "{out}", "--precision", "int4"],
     "netspec export: argument --precision: invalid choice: 'int4'"),
], ids=["--opset abc", "no command", "no spec", "unknown option", "bad choice"])
def test_argparse_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      argv: list[str], start: str) -> None:
    """argparse printed its whole usage first (ten lines for export), then the error.
    (Its own words after ``start`` vary between Python versions: how it lists choices.)"""
    out = tmp_path / "m.onnx"
    code = main([a.format(spec=RESNET18, out=out) for a in argv])
    err = capsys.readouterr().err
    command = start.split(":")[0]
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(start) and err.endswith(f" (see {command} --help)\n"), err
    assert list(tmp_path.iterdir()) == []


MLP = str(ROOT / "specs" / "mlp.yaml")


@pytest.mark.parametrize(("argv", "message"), [
    (["export", MLP, "--max-drop", "101"], "--max-drop 101: must be a finite number, at "
     "least 0 and below 100 (points of accuracy: a drop is at most 100, so a limit of 100 "
     "or more would refuse nothing)"),
    (["export", MLP, "--max-drop", "-1"], None),
    (["export", MLP, "--max-drop", "nan"], None),
    (["export", MLP, "--tolerance", "inf"], "--tolerance inf: must be a finite number, 0 or "
     "more"),
    (["export", MLP, "--tolerance", "-0.5"], None),
    (["export", MLP, "--seed", "-1"], "--seed -1: must be from 0 to 4,294,967,295"),
    (["build", MLP, "--seed", str(2**32)], None),
    (["train", MLP, "--data", "digits", "--epochs", "1", "--seed", "-3"], None),
    (["train", MLP, "--data", "digits", "--epochs", "1", "--workers", "-1"],
     "--workers -1: must be 0 or more"),
    (["train", MLP, "--data", "digits", "--epochs", "1", "--cache-mb", "nan"],
     "--cache-mb nan: must be a finite number, 0 or more"),
], ids=lambda v: " ".join(v[-2:]) if isinstance(v, list) else "")
def test_option_values_that_could_never_act_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
        message: str | None) -> None:
    """Refused as the command line is read, before any work or any file: a limit that no
    result can pass, a tolerance of inf, a seed numpy's generators refuse."""
    out = tmp_path / ("m.onnx" if argv[0] == "export" else "w.safetensors")
    flag, value = argv[-2:]
    refused(capsys, message or f"{flag} {value}: must be " + {
        "--max-drop": "a finite number, at least 0 and below 100 (points of accuracy: a "
                      "drop is at most 100, so a limit of 100 or more would refuse nothing)",
        "--tolerance": "a finite number, 0 or more",
        "--seed": "from 0 to 4,294,967,295"}[flag], *argv, "-o", str(out))
    assert list(tmp_path.iterdir()) == []


def test_run_refuses_top_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refused(capsys, "--top 0: must be 1 or more",
            "run", str(tmp_path / "m.onnx"), "--input", "x.npy", "--top", "0")


# ------------------------------------------------------------------ library warnings
def test_library_warnings_become_one_note_or_nothing(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A library's warning printed its text, its file and line, and the source line; now
    the ones to act on are netspec's note, once, and the rest say nothing."""
    import warnings

    import numpy as np

    import netspec.commands.validate as v

    def noisy(args: object) -> int:
        for _ in range(2):  # numpy's RuntimeWarning, twice: one note
            np.array([1e300]).astype(np.float32)
        warnings.warn("TypedStorage is deprecated", UserWarning, stacklevel=1)
        warnings.warn("This DataLoader will create 9 worker processes in total. Our "
                      "suggested max number of worker in current system is 2, which is "
                      "smaller than what this DataLoader is going to create.", UserWarning,
                      stacklevel=1)
        warnings.warn("a deprecation", DeprecationWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(v, "run", noisy)
    monkeypatch.setattr("sys.warnoptions", [])  # as a plain `netspec` run has them
    assert main(["validate", RESNET18]) == 0
    assert capsys.readouterr().err == (
        "note: a value too large for float32 became infinite\n"
        "note: 9 image-decoding workers (--workers) for 2 CPUs: more than the CPUs slows "
        "decoding down rather than up\n")


def test_torchs_dataloader_warning_is_netspecs_note(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The real one: more decoding workers than the CPUs torch counts."""
    from PIL import Image

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert cpus
    for split in ("train", "val"):
        for c in "ab":
            (tmp_path / "d" / split / c).mkdir(parents=True)
            for i in range(2):
                Image.new("L", (8, 8), 60 * i).save(tmp_path / "d" / split / c / f"{i}.png")
    monkeypatch.setattr("sys.warnoptions", [])
    assert main(["train", str(ROOT / "specs" / "digits_cnn.yaml"), "--set", "classes=2",
                 "--data", str(tmp_path / "d"), "--epochs", "1", "--workers",
                 str(cpus + 1), "-o", str(tmp_path / "w.safetensors")]) == 0
    assert capsys.readouterr().err == (
        f"note: {cpus + 1} image-decoding workers (--workers) for {cpus} CPUs: more than the "
        "CPUs slows decoding down rather than up\n")


@pytest.mark.parametrize("flag", ["--lr inf", "--weight-decay nan", "--warmup-epochs inf"])
def test_training_numbers_are_finite(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     flag: str) -> None:
    name, value = flag.split()
    out = tmp_path / "w.safetensors"
    refused(capsys, f"{flag}: must be a finite number", "train",
            str(ROOT / "specs" / "mlp.yaml"), "--data", "digits", "--epochs", "1",
            "-o", str(out), name, value)
    assert list(tmp_path.iterdir()) == []
