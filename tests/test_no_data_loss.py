"""Bad input never loses data: huge specs are refused before anything is allocated, an
interrupted write leaves the old file intact, and weights that do not fit the spec (or are
not safetensors) are refused in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from netspec.cli import main
from netspec.commands.common import LARGE_MODEL_BYTES

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"

HUGE = """\
netspec: 1
name: huge
input: [1000000]
layers:
  - linear: {out: 1000000}
  - relu
  - linear: {out: 1000000}
"""


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


# ---------------------------------------------------------------- huge specs
def test_huge_spec_is_counted_instantly(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "huge.yaml"
    spec.write_text(HUGE)
    start = time.perf_counter()
    code, out, _ = run_cli(capsys, "params", str(spec), "--format", "json")
    assert code == 0 and "2000002000000" in out
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("command", [
    ["build"], ["build", "-o", "{tmp}/w.safetensors"],
    ["export", "-o", "{tmp}/m.onnx"], ["export", "-o", "{tmp}/m.onnx", "--no-verify"],
    ["train", "--data", "{tmp}/none.npz", "--epochs", "1", "-o", "{tmp}/c.safetensors"],
])
def test_huge_spec_is_refused_before_building(tmp_path: Path, command: list[str],
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import netspec.backends.torch as backend

    def never(*a: object, **k: object) -> None:
        raise AssertionError("built a model that should have been refused")

    monkeypatch.setattr(backend, "build", never)  # the refusal comes before any building
    spec = tmp_path / "huge.yaml"
    spec.write_text(HUGE)
    argv = [command[0], str(spec), *(a.format(tmp=tmp_path) for a in command[1:])]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{spec}: ") and "--allow-large" in lines[0]
    # the estimate of what the command runs: (2·10¹² + 2·10⁶) weights × 4 bytes for a
    # forward pass, × 4 (gradients, AdamW's two moments) and activations for a training step
    assert ("32,000.5 GB" if command[0] == "train" else "8,000.0 GB") in lines[0], lines[0]
    assert list(tmp_path.iterdir()) == [spec]  # and nothing was written


def test_allow_large_lets_it_through(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import netspec.backends.torch as backend
    from netspec.errors import UsageError

    calls = []

    def fake_build(*a: object, **k: object) -> None:
        calls.append(a)
        raise UsageError("stopped before allocating")

    monkeypatch.setattr(backend, "build", fake_build)
    spec = tmp_path / "huge.yaml"
    spec.write_text(HUGE)
    code, _, err = run_cli(capsys, "build", str(spec), "--allow-large")
    assert code == 2 and err.strip() == "stopped before allocating"
    assert len(calls) == 1  # the flag passed the check


def test_large_threshold_is_above_every_bundled_spec(capsys: pytest.CaptureFixture[str]) -> None:
    import netspec
    from netspec.memory import step_memory

    for spec in sorted(SPECS.glob("*.yaml")):
        m = step_memory(netspec.load(spec), 64, "adamw")  # train's default batch
        assert m.training_total < LARGE_MODEL_BYTES, spec.name


# ---------------------------------------------------------------- atomic writes
#: the child patches the writer so it stops half-way through the temporary file
SLOW_WRITER = textwrap.dedent("""
    import os, sys, time
    import safetensors.numpy as stn
    real_fdopen, real_save = os.fdopen, stn.save_file

    class Half:
        def __init__(self, f):
            self.f = f
        def __enter__(self):
            return self
        def __exit__(self, *a):
            self.f.close()
        def write(self, b):
            self.f.write(b[: len(b) // 2]); self.f.flush(); time.sleep(600)
        def __getattr__(self, name):
            return getattr(self.f, name)

    def fdopen(fd, mode="r", *a, **k):
        f = real_fdopen(fd, mode, *a, **k)
        return Half(f) if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp") else f

    def save_file(tensors, path, metadata=None):
        real_save(tensors, path, metadata=metadata)
        with open(path, "rb+") as f:
            f.truncate(os.path.getsize(path) // 2)
        time.sleep(600)

    os.fdopen, stn.save_file = fdopen, save_file
    import netspec.weights as nw  # netspec writes safetensors into its own temp file
    real_write = nw._write_safetensors

    def write_safetensors(tmp, arrays, metadata):
        real_write(tmp, arrays, metadata)
        save_file(arrays, tmp, metadata)  # half of it, then wait to be killed

    nw._write_safetensors = write_safetensors
    import netspec.backends.onnx.wire as wire  # an ONNX file is written in pieces

    def write_onnx(self, path):
        data = self.tobytes()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2]); f.flush()
        time.sleep(600)

    wire.OnnxFile.write = write_onnx
    from netspec.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _kill_while_writing(argv: list[str], folder: Path, name: str,
                        timeout: float = 240) -> Path:
    """Start ``argv``, wait for the temporary file of ``name`` to appear, SIGKILL."""
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while True:
            tmps = list(folder.glob(f".{name}.*.tmp"))
            try:
                if tmps and tmps[0].stat().st_size > 0:
                    break
            except FileNotFoundError:
                # the empty file that probes the folder before any work (netspec/io.py),
                # removed in between: the write's own temporary file is still to come
                continue
            if proc.poll() is not None:
                _, err = proc.communicate()
                pytest.fail(f"exited {proc.returncode} before writing:\n{err.decode()}")
            assert time.monotonic() < deadline, "no temporary file appeared"
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode in (-signal.SIGKILL, 0)  # 0: it finished before the kill
    return tmps[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
@pytest.mark.parametrize("command,name", [
    (["export", "specs/digits_cnn.yaml", "--no-verify"], "model.onnx"),
    (["build", "specs/digits_cnn.yaml"], "w.safetensors"),
])
def test_killed_mid_write_leaves_the_old_file(tmp_path: Path, command: list[str],
                                              name: str) -> None:
    target = tmp_path / name
    old = b"the old file: must survive\n" * 100
    target.write_bytes(old)
    argv = [sys.executable, "-c", SLOW_WRITER, *command, "-o", str(target), "--force"]
    tmp = _kill_while_writing(argv, tmp_path, name)
    assert target.read_bytes() == old
    assert tmp.exists() and tmp.stat().st_size > 0  # killed half-way through the copy


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGKILL")
def test_killed_real_export_leaves_old_or_complete_file(tmp_path: Path) -> None:
    """No patching: ResNet-50's ~100 MB written for real, killed once its temporary file
    is there. The target is the old bytes, or (if the rename won the race) a whole model."""
    import onnx

    target = tmp_path / "model.onnx"
    old = b"old bytes\n" * 1000
    target.write_bytes(old)
    argv = [sys.executable, "-m", "netspec", "export", "specs/resnet50.yaml", "--no-verify",
            "-o", str(target), "--force"]
    _kill_while_writing(argv, tmp_path, "model.onnx")
    data = target.read_bytes()
    if data != old:
        onnx.checker.check_model(onnx.load_from_string(data))


# ---------------------------------------------------------------- weights
@pytest.fixture(scope="module")
def digits_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("w") / "digits.safetensors"
    assert main(["build", str(SPECS / "digits_cnn.yaml"), "-o", str(out)]) == 0
    return out


def _bad_checkpoint(good: Path, dest: Path) -> tuple[Path, list[str]]:
    """The good checkpoint with one tensor dropped, one added and one reshaped."""
    from safetensors.numpy import save_file

    from netspec.weights import load_weights

    tensors, meta = load_weights(good)
    names = [k for k in tensors if not k.endswith("num_batches_tracked")]
    dropped, reshaped = names[0], next(k for k in names[1:] if tensors[k].ndim == 4)
    del tensors[dropped]
    tensors["extra.weight"] = np.zeros((3, 3), np.float32)
    tensors[reshaped] = np.zeros((1, *tensors[reshaped].shape[1:]), np.float32)
    save_file(tensors, str(dest), metadata=meta)
    return dest, [dropped, "extra.weight", reshaped]


def _check_one_line(code: int, err: str, source: Path, names: list[str]) -> None:
    assert "Traceback" not in err and code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{source}: weights do not match spec 'digits_cnn'")
    for word in ("missing", "unexpected", "wrong shape", *names):
        assert word in lines[0], (word, lines[0])


def test_mismatched_weights_export(tmp_path: Path, digits_weights: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    bad, names = _bad_checkpoint(digits_weights, tmp_path / "bad.safetensors")
    for extra in ([], ["--no-verify"]):
        code, _, err = run_cli(capsys, "export", str(SPECS / "digits_cnn.yaml"), "--weights",
                                 str(bad), "-o", str(tmp_path / "m.onnx"), *extra)
        _check_one_line(code, err, bad, names)
        assert not (tmp_path / "m.onnx").exists()


def test_mismatched_weights_calibrate(tmp_path: Path, digits_weights: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    bad, names = _bad_checkpoint(digits_weights, tmp_path / "bad.safetensors")
    data = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.standard_normal((40, 1, 8, 8)).astype(np.float32),
             y=rng.integers(0, 10, 40))
    code, _, err = run_cli(capsys, "calibrate", str(SPECS / "digits_cnn.yaml"), "--weights",
                             str(bad), "--data", str(data), "-o", str(tmp_path / "c.safetensors"),
                             "--device", "cpu")
    _check_one_line(code, err, bad, names)
    assert not (tmp_path / "c.safetensors").exists()


@pytest.mark.parametrize("command", ["export", "calibrate"])
def test_pickled_checkpoint_is_refused_unread(tmp_path: Path, command: str,
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    import torch

    def no_unpickling(*a: object, **k: object) -> None:
        raise AssertionError("unpickled a checkpoint")

    pt = tmp_path / "model.pt"
    torch.save({"conv1.weight": torch.zeros(3)}, pt)  # torch's zip format
    raw = tmp_path / "model.pkl"
    raw.write_bytes(pickle.dumps({"conv1.weight": [0.0]}))
    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(torch, "load", no_unpickling)
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((10, 1, 8, 8), np.float32), y=np.zeros(10, np.int64))
    for path in (pt, raw):
        argv = [command, str(SPECS / "digits_cnn.yaml"), "--weights", str(path),
                "-o", str(tmp_path / "out")]
        if command == "calibrate":
            argv += ["--data", str(data)]
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and "Traceback" not in err, err
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"{path}: a pickled"), err
        assert "never unpickles" in lines[0]
