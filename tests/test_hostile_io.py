"""Hostile input to the weights, `netspec run` and every write (issue 12): each case ends
in one line and exit 2 (or works, where working is right), and no file but the named
output is ever created or changed."""

from __future__ import annotations

import errno
import io
import json
import os
import stat
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from netspec.cli import main
from netspec.errors import UsageError
from netspec.io import STALE_TEMP_S, atomic_write, check_writable
from netspec.weights import load_weights, save_weights

TINY = """\
netspec: 1
name: tiny
input: [4]
layers:
  - linear: {out: 3}
"""


def run_cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def refused(capsys: pytest.CaptureFixture[str], message: str, *argv: object) -> None:
    """The command exits 2 with exactly ``message`` as its one line on stderr."""
    code, out, err = run_cli(capsys, *argv)
    assert (code, err) == (2, message + "\n"), (code, out, err)


def snapshot(folder: Path) -> dict[str, tuple[int, float, bytes | None]]:
    """Every entry of ``folder``: its mode, its mtime, and a regular file's bytes."""
    seen = {}
    for p in sorted(folder.iterdir()):
        st = os.lstat(p)
        seen[p.name] = (st.st_mode, st.st_mtime_ns,
                        p.read_bytes() if stat.S_ISREG(st.st_mode) else None)
    return seen


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    return spec


def tiny_weights(folder: Path, name: str = "w.safetensors", **change: np.ndarray) -> Path:
    rng = np.random.default_rng(0)
    tensors = {"fc1.weight": rng.standard_normal((3, 4)).astype(np.float32),
               "fc1.bias": np.zeros(3, np.float32), **change}
    return save_weights(folder / name, tensors, {})


# ---------------------------------------------------------------- weights
def test_inf_weight_is_refused_before_verification(tmp_path: Path, tiny: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    w = np.ones((3, 4), np.float32)
    w[1, 2] = np.inf
    weights = tiny_weights(tmp_path, **{"fc1.weight": w})
    before = snapshot(tmp_path)
    refused(capsys, f"{weights}: non-finite weights (NaN or Inf) in fc1.weight",
            "export", tiny, "--weights", weights, "-o", tmp_path / "m.onnx")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", [
    ["export", "--no-verify", "-o", "{tmp}/m.onnx"], ["build", "-o", "{tmp}/b.safetensors"],
])
def test_nan_weights_are_named(tmp_path: Path, tiny: Path, command: list[str],
                               capsys: pytest.CaptureFixture[str]) -> None:
    weights = tiny_weights(tmp_path, **{"fc1.weight": np.full((3, 4), np.nan, np.float32),
                                        "fc1.bias": np.array([0, np.inf, 0], np.float32)})
    before = snapshot(tmp_path)
    refused(capsys, f"{weights}: non-finite weights (NaN or Inf) in fc1.weight, fc1.bias",
            command[0], tiny, "--weights", weights,
            *(a.format(tmp=tmp_path) for a in command[1:]))
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("dtype", ["int8", "bool"])
def test_integer_and_bool_weights_are_refused(tmp_path: Path, tiny: Path, dtype: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    weights = tiny_weights(tmp_path, **{"fc1.weight": np.ones((3, 4), dtype)})
    before = snapshot(tmp_path)
    refused(capsys, f"{weights}: weights must be floating point; fc1.weight {dtype}",
            "export", tiny, "--weights", weights, "--no-verify", "-o", tmp_path / "m.onnx")
    assert snapshot(tmp_path) == before


def write_bf16(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """A safetensors file of bfloat16 tensors (as torch writes them), by hand."""
    header: dict[str, object] = {}
    data = b""
    for name, a in tensors.items():
        raw = (np.asarray(a, np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
        header[name] = {"dtype": "BF16", "shape": list(a.shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)


def test_bf16_weights_are_widened_to_float32(tmp_path: Path, tiny: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    w = np.array([[1.5, -2.25, 0.0, 2.0**127]] * 3, np.float32)  # all exact in bfloat16
    write_bf16(tmp_path / "w.safetensors", {"fc1.weight": w,
                                            "fc1.bias": np.array([1, 2, -0.5], np.float32)})
    tensors, _ = load_weights(tmp_path / "w.safetensors")
    assert tensors["fc1.weight"].dtype == np.float32
    assert np.array_equal(tensors["fc1.weight"], w)
    code, _, err = run_cli(capsys, "export", tiny, "--weights", tmp_path / "w.safetensors",
                           "--no-verify", "-o", tmp_path / "m.onnx")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "tiny.yaml",
                                                          "w.safetensors"]


def test_weights_are_written_by_netspec_not_beside_the_target(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import safetensors.numpy

    def no_library_temp(*a: object, **k: object) -> None:
        raise AssertionError("safetensors' save_file makes a temp file of its own")

    monkeypatch.setattr(safetensors.numpy, "save_file", no_library_temp)
    weights = tiny_weights(tmp_path)
    tensors, _ = load_weights(weights)
    assert tensors["fc1.weight"].shape == (3, 4)
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


# ---------------------------------------------------------------- data
def test_npy_given_as_npz_data(tmp_path: Path, tiny: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "x.npz"
    with data.open("wb") as f:
        np.save(f, np.ones((4, 4), np.float32))
    before = snapshot(tmp_path)
    refused(capsys, f"{data}: a numpy .npy file, not an .npz; save the data with "
            "np.savez(path, x=…, y=…)",
            "train", tiny, "--data", data, "--epochs", "1", "-o", tmp_path / "c.safetensors")
    assert snapshot(tmp_path) == before


def test_npz_bomb_is_refused_from_its_headers(tmp_path: Path, tiny: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import netspec.train.data as data_mod

    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, x=np.zeros((2**18, 4), np.float32), y=np.zeros(2**18, np.int64))
    assert bomb.stat().st_size < 100_000
    with zipfile.ZipFile(bomb) as z:
        total = sum(i.file_size for i in z.infolist())
    monkeypatch.setattr(data_mod, "MAX_NPZ_BYTES", 1_000_000)  # this machine's "memory"

    def never(*a: object, **k: object) -> None:
        raise AssertionError("read the arrays of a refused .npz")

    monkeypatch.setattr(np, "load", never)
    before = snapshot(tmp_path)
    refused(capsys, f"{bomb}: inflates to {total:,} bytes, over the 1,000,000 netspec "
            "loads into memory; nothing was read",
            "train", tiny, "--data", bomb, "--epochs", "1", "-o", tmp_path / "c.safetensors")
    assert snapshot(tmp_path) == before


def test_an_npz_array_header_claiming_terabytes_is_refused_unread(
        tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each array's .npy header is read before numpy allocates what it claims."""
    data = tmp_path / "x.npz"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (2**40, 4)})
    with zipfile.ZipFile(data, "w") as z:
        z.writestr("x.npy", header.getvalue() + b"\0" * 64)
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("np.load was called"))
    before = snapshot(tmp_path)
    refused(capsys, f"{data}: array 'x': its header claims shape [1099511627776, 4] float32 "
            "(17,592,186,044,416 bytes) but the file holds 64",
            "train", tiny, "--data", data, "--epochs", "1", "-o", tmp_path / "c.safetensors")
    assert snapshot(tmp_path) == before


def test_npz_that_does_not_fit_the_spec_is_refused_before_inflating(
        tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Under the memory limit but the wrong shape: refused from the .npy headers inside
    the zip (a few hundred bytes), not after inflating it all."""
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, x=np.zeros((2**20, 5), np.float32), y=np.zeros(2**20, np.int64))
    assert bomb.stat().st_size < 200_000

    def never(*a: object, **k: object) -> None:
        raise AssertionError("read the arrays of a refused .npz")

    monkeypatch.setattr(np, "load", never)
    before = snapshot(tmp_path)
    start = time.perf_counter()
    refused(capsys, f"{bomb}: x has shape [{2**20}, 5], spec 'tiny' takes [N, 4]",
            "train", tiny, "--data", bomb, "--epochs", "1", "-o", tmp_path / "c.safetensors")
    assert time.perf_counter() - start < 10
    assert snapshot(tmp_path) == before


def npz_member(shape: tuple[int, ...], data: bytes) -> bytes:
    """An .npy whose header says ``shape`` (float32), followed by ``data``."""
    import io

    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                             "shape": shape})
    return f.getvalue() + data


@pytest.mark.parametrize("case", ["claims 4 TB", "object array"])
def test_npz_whose_header_lies_or_holds_objects_is_refused(
        tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    data = tmp_path / "d.npz"
    if case == "claims 4 TB":
        with zipfile.ZipFile(data, "w") as z:
            z.writestr("x.npy", npz_member((10**12,), bytes(16)))
            z.writestr("y.npy", npz_member((2,), bytes(8)))
        held = zipfile.ZipFile(data).getinfo("x.npy").file_size - len(npz_member((10**12,),
                                                                                  b""))
        message = (f"{data}: array 'x': its header claims shape [1000000000000] float32 "
                   f"(4,000,000,000,000 bytes) but the file holds {held:,}")
    else:
        np.savez(data, x=np.array([{}, {}], dtype=object), y=np.zeros(2, np.int64))
        message = (f"{data}: array 'x': holds Python objects (dtype object); netspec never "
                   "unpickles: save a numeric array")
    before = snapshot(tmp_path)
    refused(capsys, message,
            "train", tiny, "--data", data, "--epochs", "1", "-o", tmp_path / "c.safetensors")
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------- netspec run
@pytest.fixture
def model(tmp_path: Path, tiny: Path) -> Path:
    out = tmp_path / "m.onnx"
    assert main(["export", str(tiny), "--weights", str(tiny_weights(tmp_path)),
                 "--no-verify", "-o", str(out)]) == 0
    return out


def test_run_refuses_an_npy_header_claiming_terabytes(tmp_path: Path, model: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    x = tmp_path / "x.npy"
    with x.open("wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (2**40, 6)})
        f.write(b"\0" * 64)
    refused(capsys, f"{x}: its header claims shape [1099511627776, 6] float32 "
            "(26,388,279,066,624 bytes) but the file holds 64",
            "run", model, "--input", x)


def _onnx_model(path: Path, inputs: int, reshape_to: list[int] | None = None) -> Path:
    import onnx
    from onnx import TensorProto, helper

    ins = [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, [None, 4])
           for i in range(inputs)]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    if reshape_to is not None:  # fails while running: 2·4 values cannot be [5]
        shape = helper.make_tensor("shape", TensorProto.INT64, [len(reshape_to)], reshape_to)
        nodes = [helper.make_node("Reshape", ["x0", "shape"], ["y"])]
        inits = [shape]
    elif inputs:
        nodes = [helper.make_node("Add", ["x0", f"x{inputs - 1}"], ["y"])]
        inits = []
    else:
        value = helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])
        nodes = [helper.make_node("Constant", [], ["y"], value=value)]
        inits = []
    graph = helper.make_graph(nodes, "g", ins, [out], initializer=inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


@pytest.mark.parametrize("inputs,names", [(2, "x0, x1"), (0, "none")])
def test_run_refuses_models_without_exactly_one_input(tmp_path: Path, inputs: int, names: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    m = _onnx_model(tmp_path / "two.onnx", inputs)
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float32))
    refused(capsys, f"{m}: the model has {inputs} inputs ({names}); netspec runs models "
            "with one input", "run", m, "--input", tmp_path / "x.npy")


def test_run_refuses_a_uint8_input(tmp_path: Path, model: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "u.npy", np.ones((2, 4), np.uint8))
    refused(capsys, "input dtype uint8, the model wants float32 (convert with "
            "x.astype(np.float32))", "run", model, "--input", tmp_path / "u.npy")


def test_run_reports_an_onnxruntime_failure_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = _onnx_model(tmp_path / "bad.onnx", 1, reshape_to=[5])
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float32))
    code, out, err = run_cli(capsys, "run", m, "--input", tmp_path / "x.npy")
    assert code == 2 and out == "" and len(err.splitlines()) == 1, err
    assert err.startswith(f"{m}: onnxruntime failed running it (") and "Reshape" in err, err


def test_run_on_a_spec_says_export_it(tmp_path: Path, tiny: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float32))
    refused(capsys, f"{tiny}: this is a spec; export it first "
            f"(netspec export {tiny} -o model.onnx)", "run", tiny, "--input",
            tmp_path / "x.npy")


def test_run_output_needs_force(tmp_path: Path, model: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    x, y = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(x, np.ones((2, 4), np.float32))
    y.write_bytes(b"keep me")
    refused(capsys, f"{y}: exists; pass --force to replace it",
            "run", model, "--input", x, "--output", y)
    assert y.read_bytes() == b"keep me"
    refused(capsys, f"{x}: is one of this command's inputs; write the output elsewhere",
            "run", model, "--input", x, "--output", x, "--force")
    assert run_cli(capsys, "run", model, "--input", x, "--output", y, "--force")[0] == 0
    assert np.load(y).shape == (2, 3)


# ---------------------------------------------------------------- writes
def test_special_files_are_never_replaced(tmp_path: Path, tiny: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "fifo.onnx"
    os.mkfifo(fifo)
    link = tmp_path / "link.onnx"
    link.symlink_to(fifo)
    before = snapshot(tmp_path)
    for target in (fifo, link):
        refused(capsys, f"{target}: not a regular file; netspec writes only to regular files",
                "export", tiny, "--no-verify", "-o", target, "--force")
        with pytest.raises(UsageError, match="not a regular file"):
            atomic_write(target, b"x")
    assert snapshot(tmp_path) == before
    with pytest.raises(UsageError, match="not a regular file"):  # a stat, nothing written
        check_writable("/dev/null", force=True)


def test_symlink_to_a_regular_file_is_replaced_as_a_link(tmp_path: Path) -> None:
    real = tmp_path / "real.bin"
    real.write_bytes(b"old")
    link = tmp_path / "link.bin"
    link.symlink_to(real)
    atomic_write(link, b"new", force=True)
    assert real.read_bytes() == b"old" and link.read_bytes() == b"new"
    assert not link.is_symlink()


def test_second_writer_to_a_new_path_fails_instead_of_replacing(tmp_path: Path) -> None:
    target = tmp_path / "m.onnx"

    def meanwhile_another_export_finishes(tmp: Path) -> None:
        tmp.write_bytes(b"mine")
        target.write_bytes(b"the first export")  # after our exists-check, before our link

    with pytest.raises(UsageError) as e:
        atomic_write(target, meanwhile_another_export_finishes, force=False)
    assert str(e.value) == f"{target}: exists; pass --force to replace it"
    assert target.read_bytes() == b"the first export"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


@pytest.mark.parametrize("command,output", [
    (["export", "{spec}", "--no-verify", "--weights", "{w}"], "{spec}"),
    (["export", "{spec}", "--no-verify", "--weights", "{w}"], "{w}"),
    (["build", "{spec}", "--weights", "{w}"], "{w}"),
    (["train", "{spec}", "--data", "{data}", "--epochs", "1"], "{data}"),
    (["calibrate", "{spec}", "--weights", "{w}", "--data", "{data}"], "{data}"),
])
def test_force_onto_the_commands_own_input_is_refused(
        tmp_path: Path, tiny: Path, command: list[str], output: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    w = tiny_weights(tmp_path)
    data = tmp_path / "d.npz"
    np.savez(data, x=np.ones((4, 4), np.float32), y=np.zeros(4, np.int64))
    names = {"spec": tiny, "w": w, "data": data}
    argv = [a.format(**names) for a in command]
    target = output.format(**names)
    before = snapshot(tmp_path)
    refused(capsys, f"{target}: is one of this command's inputs; write the output elsewhere",
            *argv, "-o", target, "--force")
    assert snapshot(tmp_path) == before


def test_train_output_onto_the_resumed_runs_state(tmp_path: Path, tiny: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    w = tiny_weights(tmp_path)
    state = tmp_path / "w.state.safetensors"
    state.write_bytes(b"resume state")
    before = snapshot(tmp_path)
    refused(capsys, f"{state}: is one of this command's inputs; write the output elsewhere",
            "train", tiny, "--data", "digits", "--resume", w, "-o", state, "--force")
    assert snapshot(tmp_path) == before


def test_stale_temp_files_are_cleaned_on_the_next_write(tmp_path: Path, tiny: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    stale = tmp_path / ".m.onnx.k1ll3d_x.tmp"
    fresh = tmp_path / ".m.onnx.inflight.tmp"  # another write may be running: kept
    other = tmp_path / ".m.onnx.notes.tmp"  # not netspec's naming: kept
    for p in (stale, fresh, other):
        p.write_bytes(b"partial")
    old = time.time() - 2 * STALE_TEMP_S
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    code, _, err = run_cli(capsys, "export", tiny, "--no-verify", "-o", tmp_path / "m.onnx")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".m.onnx.inflight.tmp", ".m.onnx.notes.tmp", "m.onnx", "tiny.yaml"]


@pytest.mark.parametrize("fail,err,text", [
    ("replace", errno.EROFS, "Read-only file system"),
    ("fsync", errno.ENOSPC, "No space left on device"),
    ("mkstemp", errno.EACCES, "Permission denied"),
])
def test_os_errors_are_one_line_and_keep_the_old_file(
        tmp_path: Path, tiny: Path, fail: str, err: int, text: str,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    target = tmp_path / "m.onnx"
    target.write_bytes(b"old model")

    def failing(*a: object, **k: object) -> None:
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(tempfile if fail == "mkstemp" else os, fail, failing)
    refused(capsys, f"{target}: cannot write: {text}",
            "export", tiny, "--no-verify", "-o", target, "--force")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "tiny.yaml"]
    assert target.read_bytes() == b"old model"


def test_a_name_too_long_is_one_line(tmp_path: Path, tiny: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / ("m" * 300 + ".onnx")
    refused(capsys, f"{target}: cannot write: File name too long",
            "export", tiny, "--no-verify", "-o", target)
    # a name that fits leaves room for the temp file's longer one
    long_ok = tmp_path / ("m" * 245 + ".onnx")
    assert run_cli(capsys, "export", tiny, "--no-verify", "-o", long_ok)[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [long_ok.name, "tiny.yaml"]


def test_ctrl_c_during_a_write_leaves_no_temp_file(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str],
                                                   tiny: Path) -> None:
    target = tmp_path / "w.safetensors"
    target.write_bytes(b"old")

    def interrupted(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, interrupted)
    assert [p.name for p in tmp_path.iterdir() if p.name != "tiny.yaml"] == ["w.safetensors"]
    assert target.read_bytes() == b"old"

    import netspec.weights as nw

    monkeypatch.setattr(nw, "_write_safetensors", lambda tmp, *a: interrupted(tmp))
    code, _, err = run_cli(capsys, "build", tiny, "-o", target, "--force")
    assert (code, err) == (130, "netspec: interrupted\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml", "w.safetensors"]
    assert target.read_bytes() == b"old"
