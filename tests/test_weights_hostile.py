"""Issue 21, weights from strangers: every hostile weights file, --map file or output
folder ends in one line on stderr and exit 2, with nothing written — before the work
where the problem is known before it (an .npz's zip headers, the output folder) — and no
library warning or message (numpy's, torch's) reaches the user. A property test feeds
the loaders generated hostile files: every outcome is a pairing or one NetspecError line.
"""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file
from safetensors.torch import save_file

import netspec
import netspec.train.data as data_mod
import netspec.weights_import as wi
from netspec.cli import main
from netspec.errors import NetspecError

TINY = """\
netspec: 1
name: tiny
input: [4]
layers:
  - linear: {out: 3, as: fc}
"""
SAVE = ("where you trust the file, save a plain state dict: torch.save(model.state_dict(), "
        "'weights.pth') or safetensors.torch.save_file(model.state_dict(), "
        "'weights.safetensors')")


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    return spec


def state(weight: object = None, bias: object = None) -> dict[str, np.ndarray]:
    w = np.arange(12, dtype=np.float32).reshape(3, 4) if weight is None else weight
    b = np.zeros(3, np.float32) if bias is None else bias
    return {"fc.weight": np.asarray(w), "fc.bias": np.asarray(b)}


def refused(capsys: pytest.CaptureFixture[str], folder: Path, *argv: object) -> str:
    """Runs the command; it must exit 2 with one line on stderr, print nothing on
    stdout and leave ``folder`` as it was. Returns the line."""
    before = sorted(p.name for p in folder.iterdir())
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    assert (code, out.out) == (2, ""), (code, out.out, out.err)
    assert "Traceback" not in out.err and len(out.err.splitlines()) == 1, out.err
    assert sorted(p.name for p in folder.iterdir()) == before
    return out.err.strip()


def never(*a: object, **k: object) -> None:
    raise AssertionError("read what should have been refused unread")


# ------------------------------------------------------------------ .npz


def test_an_npz_that_inflates_past_the_limit_is_refused_unread(
        tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, **state(np.zeros((3, 4), np.float32),
                                      np.zeros(2**18, np.float32)))
    assert bomb.stat().st_size < 10_000
    with zipfile.ZipFile(bomb) as z:
        total = sum(i.file_size for i in z.infolist())
    assert total > 2**20
    monkeypatch.setattr(data_mod, "MAX_NPZ_BYTES", 1_000_000)  # this machine's "memory"
    monkeypatch.setattr(np, "load", never)
    line = refused(capsys, tmp_path, "weights", "import", tiny, bomb,
                   "-o", tmp_path / "w.safetensors")
    assert line == (f"{bomb}: inflates to {total:,} bytes, over the 1,000,000 netspec loads "
                    "into memory; nothing was read")


def test_zip_headers_claiming_gigabytes_are_refused_unread(
        tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Five members whose central-directory sizes claim 4 GB each (the file is small):
    20 GB is over any limit netspec sets (16 GB at most), and nothing is inflated."""
    lying = tmp_path / "lying.npz"
    with zipfile.ZipFile(lying, "w") as z:
        for i in range(5):
            z.writestr(f"a{i}.npy", b"x")
    raw = bytearray(lying.read_bytes())
    claimed = 0xFFFF_FFF0
    at = raw.find(b"PK\x01\x02")
    while at >= 0:  # each central directory entry: uncompressed size at offset 24
        raw[at + 24:at + 28] = struct.pack("<I", claimed)
        at = raw.find(b"PK\x01\x02", at + 4)
    lying.write_bytes(bytes(raw))
    monkeypatch.setattr(np, "load", never)
    line = refused(capsys, tmp_path, "weights", "import", tiny, lying,
                   "-o", tmp_path / "w.safetensors")
    limit = data_mod.npz_limit()
    assert line == (f"{lying}: inflates to {5 * claimed:,} bytes, over the {limit:,} "
                    "netspec loads into memory; nothing was read")


def npy_bytes(header: dict[str, object], data: bytes) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + data


@pytest.mark.parametrize("case", ["not_zip", "npy", "huge_header", "objects"])
def test_an_npz_that_is_not_one_or_lies_is_one_line(
        case: str, tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "w.npz"
    if case == "not_zip":
        src.write_bytes(b"hello, not a zip")
        want = f"{src}: not an .npz file (save the state dict with np.savez(path, **state_dict))"
    elif case == "npy":
        np.save(src.open("wb"), np.ones(3))
        want = (f"{src}: a numpy .npy file, not an .npz; save the state dict with "
                "np.savez(path, **state_dict)")
    elif case == "huge_header":  # 3.6 TiB claimed, 64 bytes there
        with zipfile.ZipFile(src, "w") as z:
            z.writestr("fc.weight.npy", npy_bytes(
                {"descr": "<f4", "fortran_order": False, "shape": (2**40, 900)}, b"\0" * 64))
        want = (f"{src}: array 'fc.weight': its header claims shape [1099511627776, 900] "
                "float32 (3,958,241,859,993,600 bytes) but the file holds 64")
    else:
        np.savez(src, **{"fc.weight": np.array([{"a": 1}], dtype=object)})
        want = (f"{src}: array 'fc.weight': holds Python objects (dtype object); netspec "
                "never unpickles: save a numeric array")
    line = refused(capsys, tmp_path, "weights", "import", tiny, src,
                   "-o", tmp_path / "out.safetensors")
    assert line == want


# ------------------------------------------------------------------ --map


@pytest.mark.parametrize("text,where", [
    ("fc.: " + "[" * 50_000 + "]" * 50_000 + "\n", "1:70"),
    ("- " * 50_000 + "a\n", "1:131"),
    ("".join("  " * i + f"k{i}:\n" for i in range(100)), "66:131"),
], ids=["brackets", "dashes", "indented"])
def test_a_deeply_nested_map_is_one_line(text: str, where: str, tmp_path: Path, tiny: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """50,000 levels of brackets or dashes (100 kB) crashed libyaml's composer; a
    hundred levels of keys would recurse: each is the spec loader's one line."""
    src = tmp_path / "w.npz"
    np.savez(src, **state())
    the_map = tmp_path / "map.yaml"
    the_map.write_text(text)
    line = refused(capsys, tmp_path, "weights", "import", tiny, src, "--map", the_map,
                   "-o", tmp_path / "out.safetensors")
    assert line == f"{the_map}:{where}: nested deeper than 64 levels"


def test_a_map_that_is_not_a_mapping_is_one_line(tmp_path: Path, tiny: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "w.npz"
    np.savez(src, **state())
    the_map = tmp_path / "map.yaml"
    for text, want in (("- a\n- b\n", "1:1: the top level of a --map must be a mapping, "
                        "not a list"),
                       ("", "1:1: empty --map: expected a mapping"),
                       ("a: [b]\n", "--map takes a mapping 'source name: spec name' "
                        "(strings)")):
        the_map.write_text(text)
        line = refused(capsys, tmp_path, "weights", "import", tiny, src, "--map", the_map,
                       "-o", tmp_path / "out.safetensors")
        sep = ":" if want[0].isdigit() else ": "
        assert line == f"{the_map}{sep}{want}"


# ------------------------------------------------------------------ values


INT64_MIN = np.iinfo(np.int64).min


@pytest.mark.filterwarnings("error")  # no numpy RuntimeWarning may reach the user
@pytest.mark.parametrize("weight,bad", [
    (np.full((3, 4), np.nan, np.float32), "(float32) holds NaN or infinite values; weights "
     "must be finite"),
    (np.full((3, 4), np.inf, np.float16), "(float16) holds NaN or infinite values; weights "
     "must be finite"),
    (np.full((3, 4), 1e300), "(float64) holds 1e+300, beyond the range of float32 "
     "(±3.403e+38), in which netspec keeps weights"),
    (np.full((3, 4), 2**62 + 1, np.int64), "(int64) holds 4611686018427387905, which "
     "float32, in which netspec keeps weights, would round to 4611686018427387904"),
    (np.full((3, 4), 2**24 + 1, np.int32), "(int32) holds 16777217, which float32, in "
     "which netspec keeps weights, would round to 16777216"),
    (np.full((3, 4), 2**64 - 1, np.uint64), "(uint64) holds 18446744073709551615, which "
     "float32, in which netspec keeps weights, would round to 18446744073709551616"),
], ids=["nan", "inf16", "1e300", "2**62+1", "2**24+1", "2**64-1"])
def test_values_float32_cannot_hold_are_refused(
        weight: np.ndarray, bad: str, tmp_path: Path, tiny: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "w.npz"
    np.savez(src, **state(weight))
    line = refused(capsys, tmp_path, "weights", "import", tiny, src,
                   "-o", tmp_path / "out.safetensors")
    assert line == f"{src}: tensor 'fc.weight' {bad}"


@pytest.mark.filterwarnings("error")
def test_conversions_are_exact_where_they_say_so_and_said(
        tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # integers float32 holds exactly: a power of two's multiples, the most negative int64
    ints = np.array([[INT64_MIN, 2**62, 2**24 + 2, -(2**40) * 3],
                     [0, 1, -1, 2**24], [7, 2**53, 5 * 2**30, -12]], dtype=np.int64)
    floats = np.array([0.1, 1e-300, -2.5])  # float64: rounded to float32, as numpy does
    src = tmp_path / "w.npz"
    np.savez(src, **state(ints, floats))
    out = tmp_path / "out.safetensors"
    assert main(["weights", "import", str(tiny), str(src), "-o", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert ("converted to float32: int64 → float32 (exact) (1 tensor), float64 → float32 "
            "(1 tensor)") in stdout
    got = load_file(str(out))
    want_w = np.array([[float(int(v)) for v in row] for row in ints], dtype=np.float32)
    assert [[int(v) for v in row] for row in got["fc.weight"]] == ints.tolist()
    np.testing.assert_array_equal(got["fc.weight"], want_w)
    np.testing.assert_array_equal(got["fc.bias"], np.array([np.float32(v) for v in floats]))

    # bfloat16 (numpy has none) is widened exactly, and said
    bf = tmp_path / "bf.safetensors"
    w = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 8
    save_file({"fc.weight": w.to(torch.bfloat16), "fc.bias": torch.ones(3)}, str(bf))
    assert main(["weights", "import", str(tiny), str(bf), "-o", str(out), "--force"]) == 0
    assert "converted to float32: bfloat16 → float32 (exact) (1 tensor)" in \
        capsys.readouterr().out
    np.testing.assert_array_equal(load_file(str(out))["fc.weight"], w.numpy())


# ------------------------------------------------------------------ pickles


class Planted:
    """Unpickling it would make a folder: the proof that no pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (str(self.marker),)


@pytest.mark.filterwarnings("error")  # torch's UserWarning on a pickle protocol, say
@pytest.mark.parametrize("how", ["raw2", "raw4", "raw5", "zip", "legacy"])
def test_a_pickle_is_netspecs_own_line_and_never_runs(
        how: str, tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "ran"
    payload = {"fc.weight": torch.zeros(3, 4), "hook": Planted(marker)}
    src = tmp_path / "evil.pth"
    if how.startswith("raw"):
        src.write_bytes(pickle.dumps(payload, protocol=int(how[3:])))
    else:
        torch.save(payload, src, _use_new_zipfile_serialization=how == "zip")
    line = refused(capsys, tmp_path, "weights", "import", tiny, src,
                   "-o", tmp_path / "out.safetensors")
    assert not marker.exists()
    what = ("a raw Python pickle, not torch.save's format" if how.startswith("raw")
            else "posix.mkdir")
    assert line == (f"{src}: holds a pickled Python object ({what}) that netspec will not "
                    f"run (it reads only tensors in plain containers); {SAVE}")


@pytest.mark.filterwarnings("error")
def test_a_pickle_torchs_loader_cannot_parse_is_netspecs_own_line(
        tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """torch.save's pre-1.6 format with pickle protocol 4: torch's restricted loader
    lacks an opcode of it (and warns of the protocol); netspec says so, in one line of
    its own, and does not fall back to unrestricted unpickling."""
    sd = {k: torch.from_numpy(v) for k, v in state().items()}
    src = tmp_path / "old.pt"
    torch.save(sd, src, _use_new_zipfile_serialization=False, pickle_protocol=4)
    line = refused(capsys, tmp_path, "weights", "import", tiny, src,
                   "-o", tmp_path / "out.safetensors")
    assert line == (f"{src}: its pickle is in a form torch's restricted loader cannot read "
                    "(Unsupported operand 149), and netspec never unpickles unrestricted; "
                    f"{SAVE}")


# ------------------------------------------------------------------ the output folder


@pytest.fixture
def unwritable(tmp_path: Path) -> Iterator[Path]:
    """A folder this process cannot make a file in: read-only by its mode, or, for
    root (whom modes do not stop), immutable (chattr +i)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = os.geteuid() == 0 and shutil.which("chattr") is not None and \
        subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    try:
        try:  # the premise, checked: a folder this process can still write is no test
            (folder / "probe").touch()
        except OSError:
            pass
        else:
            pytest.skip("no folder this process cannot write can be made here")
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def test_an_unwritable_output_folder_is_refused_before_reading(
        unwritable: Path, tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "w.npz"
    np.savez(src, **state())
    monkeypatch.setattr(wi, "read_source", never)  # the weights are not read at all
    out = unwritable / "out.safetensors"
    line = refused(capsys, unwritable, "weights", "import", tiny, src, "-o", out)
    assert line in (f"{out}: cannot write: Permission denied",
                    f"{out}: cannot write: Operation not permitted")


@pytest.mark.parametrize("err", [errno.EACCES, errno.EROFS])
def test_a_folder_that_refuses_a_new_file_is_refused_before_reading(
        err: int, tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the reason the folder takes no file (a read-only mount, an ACL), as the
    system says it: the same one line, before the weights are read."""
    src = tmp_path / "w.npz"
    np.savez(src, **state())

    def refuse(*a: object, **k: object) -> None:
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(wi, "read_source", never)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    out = tmp_path / "out.safetensors"
    line = refused(capsys, tmp_path, "weights", "import", tiny, src, "-o", out)
    assert line == f"{out}: cannot write: {os.strerror(err)}"


# ------------------------------------------------------------------ fuzz


def valid_files() -> dict[str, bytes]:
    """The tiny spec's weights in every format netspec imports."""
    sd = {k: torch.from_numpy(v) for k, v in state().items()}
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for name in ("w.safetensors", "w.npz", "w.pth", "legacy.pth"):
            p = Path(d) / name
            if name.endswith(".safetensors"):
                save_file(sd, str(p))
            elif name.endswith(".npz"):
                np.savez(p, **state())
            else:
                torch.save(sd, p, _use_new_zipfile_serialization=name == "w.pth")
            out[name] = p.read_bytes()
    return out


VALID = valid_files()
SUFFIX = {"w.safetensors": ".safetensors", "w.npz": ".npz", "w.pth": ".pth",
          "legacy.pth": ".pth"}


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid file cut short, with bytes overwritten or inserted."""
    name = draw(st.sampled_from(sorted(VALID)))
    raw = bytearray(VALID[name])
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(len(raw) - 1, 0)))
        action = draw(st.sampled_from(["cut", "set", "insert"]))
        junk = draw(st.binary(min_size=1, max_size=8))
        if action == "cut":
            raw = raw[:at]
        elif action == "set":
            raw[at:at + len(junk)] = junk
        else:
            raw[at:at] = junk
    return SUFFIX[name], bytes(raw)


DTYPES = ["F32", "F64", "F16", "BF16", "F8_E4M3", "I64", "U64", "I8", "BOOL", "C64", "XX"]


@st.composite
def safetensors_headers(draw: st.DrawFn) -> tuple[str, bytes]:
    """A safetensors file whose JSON header says what it likes: dtypes, shapes (huge
    ones too), offsets, and a header length that may lie."""
    header: dict[str, object] = {}
    for name in draw(st.lists(st.sampled_from(["fc.weight", "fc.bias", "x", ""]),
                              max_size=3, unique=True)):
        header[name] = {
            "dtype": draw(st.sampled_from(DTYPES)),
            "shape": draw(st.lists(st.sampled_from([0, 1, 3, 4, 2**31, 2**62]), max_size=3)),
            "data_offsets": draw(st.lists(st.integers(0, 2**64), min_size=2, max_size=2)),
        }
    text = json.dumps(header).encode()
    size = draw(st.sampled_from([len(text), len(text) + 5, 2**40, 0]))
    body = draw(st.binary(max_size=64))
    return ".safetensors", struct.pack("<Q", size) + text + body


@st.composite
def npz_headers(draw: st.DrawFn) -> tuple[str, bytes]:
    """An .npz whose members' .npy headers claim what they like over what they hold."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", draw(st.sampled_from([zipfile.ZIP_STORED,
                                                         zipfile.ZIP_DEFLATED]))) as z:
        for name in draw(st.lists(st.sampled_from(["fc.weight", "fc.bias", "x"]),
                                  max_size=3, unique=True)):
            shape = tuple(draw(st.lists(st.sampled_from([0, 1, 3, 4, 2**40]), max_size=3)))
            descr = draw(st.sampled_from(["<f4", ">f8", "<i8", "|b1", "|O", "<c8", "|V3"]))
            data = draw(st.binary(max_size=64))
            try:
                member = npy_bytes({"descr": descr, "fortran_order": False, "shape": shape},
                                   data)
            except ValueError:
                member = data
            z.writestr(name + draw(st.sampled_from([".npy", ".npy", ""])), member)
    return ".npz", buf.getvalue()


PREFIXES = [b"", b"PK\x03\x04", b"\x80\x02", b"\x80\x04\x95", wi.LEGACY_MAGIC,
            b"\x80\x02" + wi.LEGACY_MAGIC, b"\x93NUMPY\x01\x00", b"\x08\x00\x00\x00" * 2]


@st.composite
def random_files(draw: st.DrawFn) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from([".safetensors", ".npz", ".pth", ".pt"]))
    return suffix, draw(st.sampled_from(PREFIXES)) + draw(st.binary(max_size=200))


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.filterwarnings("error")  # a library warning is an outcome of neither kind
@settings(max_examples=300, deadline=None)
@given(st.one_of(mutated(), safetensors_headers(), npz_headers(), random_files()))
def test_hostile_weights_files_pair_or_are_one_line(fuzz_dir: Path,
                                                    case: tuple[str, bytes]) -> None:
    suffix, raw = case
    path = fuzz_dir / f"w{suffix}"
    path.write_bytes(raw)
    graph = netspec.loads(TINY)
    try:
        pairing = wi.pair(graph, wi.read_source(path), str(path))
    except NetspecError as e:
        assert str(e) and "\n" not in str(e), str(e)
        return
    assert set(pairing.tensors) == {"fc.weight", "fc.bias"}
    assert all(a.dtype == np.float32 and np.isfinite(a).all()
               for a in pairing.tensors.values())
