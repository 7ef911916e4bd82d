"""Fuzzing: bad input never crashes netspec.

(a) Random valid specs (tests/strategies.py) build in torch with exactly the counted
    parameters and the Graph's shapes, and export to ONNX that onnxruntime runs like torch.
(b) Random mutations of valid specs — keys deleted, values of the wrong type, kinds
    swapped, text truncated, bytes inserted or replaced, lines duplicated, indentation
    changed — go through ``netspec validate`` and ``netspec params`` in-process. The only
    outcomes allowed: exit 0, or exit 2 with every stderr line ``FILE:LINE:COL: message``
    (a usage error without a position: one ``FILE: message`` line). Anything else —
    another exit status, a traceback, an exception out of ``main`` — is a bug.

Profiles: the default (``netspec-fuzz-ci``) keeps the file well under a minute;
``NETSPEC_FUZZ=long`` selects ``netspec-fuzz-long`` for a deeper hunt
(``NETSPEC_FUZZ_EXAMPLES`` sets its examples per test). With ``NETSPEC_FUZZ_COUNT=FILE``
the number of cases run (and the slowest) is written to FILE, as JSON, every 200 cases
and at the end.
"""

from __future__ import annotations

import copy
import io
import json
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import spec_texts

import netspec
from netspec.cli import main
from netspec.kinds import OPS

_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile("netspec-fuzz-ci", deadline=None, max_examples=150,
                          suppress_health_check=_HEALTH, print_blob=True)
#: (the default profile, tests/conftest.py, is derandomized: a long hunt draws anew each run)
settings.register_profile("netspec-fuzz-long", deadline=None, derandomize=False,
                          max_examples=int(os.environ.get("NETSPEC_FUZZ_EXAMPLES", "20000")),
                          suppress_health_check=_HEALTH, print_blob=True)
PROFILE = "netspec-fuzz-long" if os.environ.get("NETSPEC_FUZZ") == "long" else "netspec-fuzz-ci"
FUZZ = settings.get_profile(PROFILE)
#: building + exporting is ~0.1–1 s per spec: fewer of those
BUILD = settings(FUZZ, max_examples=max(1, FUZZ.max_examples // 10))

COUNTS: Counter[str] = Counter()
SLOWEST: dict[str, float] = {}


def _record(kind: str, seconds: float) -> None:
    COUNTS[kind] += 1
    SLOWEST[kind] = max(SLOWEST.get(kind, 0.0), seconds)
    if sum(COUNTS.values()) % 200 == 0:
        _write_counts()


def _write_counts() -> None:
    dest = os.environ.get("NETSPEC_FUZZ_COUNT")
    if dest:
        Path(dest).write_text(json.dumps(
            {"profile": PROFILE, "total": sum(COUNTS.values()), "cases": dict(COUNTS),
             "slowest_s": {k: round(v, 3) for k, v in SLOWEST.items()}}, indent=1) + "\n")


@pytest.fixture(scope="module", autouse=True)
def _count_cases() -> Iterator[None]:
    yield
    _write_counts()


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# ---------------------------------------------------------------- (a) valid specs
@BUILD
@given(spec=spec_texts())
def test_valid_specs_build_count_and_export(spec: tuple[str, tuple[int, ...]]) -> None:
    import torch
    from torch.fx.passes.shape_prop import ShapeProp

    start = time.perf_counter()
    text, expected = spec
    g = netspec.loads(text)
    assert g.output_shape == expected
    model = netspec.build(g).eval()
    assert sum(p.numel() for p in model.parameters()) == g.params().params
    buffers = [b for k, b in model.named_buffers() if not k.endswith("num_batches_tracked")]
    assert sum(b.numel() for b in buffers) == g.params().buffers
    x = torch.randn(2, *g.input_shape)
    with torch.no_grad():
        ShapeProp(model).propagate(x)
    for fx_node in model.graph.nodes:
        if fx_node.op == "call_module":
            got = tuple(fx_node.meta["tensor_meta"].shape)
            assert got == (2, *g[fx_node.target].shape), fx_node.target
    out = next(n for n in model.graph.nodes if n.op == "output")
    assert tuple(out.meta["tensor_meta"].shape) == (2, *expected)
    # onnxruntime vs torch, on the torch backend's initial weights (raises on a mismatch)
    _, report = netspec.export_onnx(g, verify=True)
    assert report.verification is not None and report.verification.ok
    _record("valid_build_export", time.perf_counter() - start)


# Found by this file, and now refused by the spec language (each validated once and then
# failed in a backend): a dilated maxpool window that sees only padding (-inf, then NaN in
# torch but not in onnxruntime), a norm over one value (torch's GroupNorm raises at batch
# 1), and conv_transpose output_pad ≥ stride (onnxruntime refuses it).
@pytest.mark.parametrize(("layer", "input_shape", "message"), [
    ("maxpool: {k: [1, 2], pad: [0, 1], dilation: [1, 2]}", "[1, 1, 1]", "only padding"),
    ("norm: {kind: layer, affine: channel}", "[1, 1, 1]", "one value"),
    ("norm: {kind: group, groups: 2}", "[2, 1, 1]", "one value"),
    ("conv_transpose: {out: 1, k: 3, stride: 1, dilation: 2, output_pad: 1}", "[1, 2, 2]",
     "smaller than stride"),
])
def test_specs_the_backends_cannot_run_are_refused(layer: str, input_shape: str,
                                                   message: str) -> None:
    with pytest.raises(netspec.NetspecError, match=message):
        netspec.loads(f"netspec: 1\nname: t\ninput: {input_shape}\nlayers:\n  - {layer}\n")


# ---------------------------------------------------------------- (b) mutations
KINDS = sorted(OPS)
SPEC_KINDS = ["conv", "conv_transpose", "linear", "norm", "dropout", "relu", "gelu",
              "maxpool", "avgpool", "adaptive_avgpool", "global_avgpool", "flatten",
              "upsample", "residual", "dense", "add", "concat", "blka", "blkb", "input",
              "layers", "repeat", "as", "nope", "", "$w"]
NASTY: list[Any] = [
    None, True, False, 0, -1, 1, 3, 2**31, 2**63, 10**30, -10**30, 1e308, -1e-308,
    float("inf"), float("-inf"), float("nan"), 0.5, -0.5, "", " ", "x", "$", "$$", "$nope",
    "$w", "$in", "$i", "$c", "$w * 1e30", "$w / 0", "$w // 0", "$w % 0", "1e999 $",
    "max()", "min($w)", "round($w, 1000000)", "round($w, -1000000)", "int($w, 2)",
    "$w ** 2", "__import__('os') $", "(" * 40 + "$w" + ")" * 40, "9" * 400 + " + $w",
    "$w" + " + 1" * 200, "-" * 300 + "$w", "$w.real", "$w[0]", "2 - min($i, 1)",
    "required", "batch", "group", "relu", "auto", "identity", "classification",
    "segmentation", [], [1], [0], [-1], [1, 2], [1, 2, 3], [1, 2, 3, 4], [0, 0, 0],
    [3, 0, 5], [[1]], ["$w"], [None], [1.5, 2, 2], {}, {"a": 1}, {"out": 4},
    {"k": [1, 2, 3]}, {"from": []}, {"body": []}, {"body": None}, {"repeat": 0},
    {"repeat": 10**9}, {"as": "x.y"}, {"as": ""}, {"n": -1},
]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for k in path:
        doc = doc[k]
    return doc


def mutate_data(draw: Any, doc: Any) -> Any:
    """One structural mutation of the parsed document (in place; returns the new root)."""
    paths = list(_paths(doc))
    path = draw(st.sampled_from(paths))
    op = draw(st.sampled_from(["delete", "retype", "retype", "swap_kind", "rename_key",
                               "duplicate", "wrap"]))
    if not path:
        return copy.deepcopy(draw(st.sampled_from(NASTY))) if op == "retype" else [doc]
    parent, key = _get(doc, path[:-1]), path[-1]
    if op == "delete":
        del parent[key]
    elif op == "retype":
        parent[key] = copy.deepcopy(draw(st.sampled_from(NASTY)))  # NASTY stays as it is
    elif op == "swap_kind":
        value = parent[key]
        new = draw(st.sampled_from(SPEC_KINDS))
        if isinstance(value, str):
            parent[key] = new
        elif isinstance(value, dict) and value:
            old = draw(st.sampled_from(list(value)))
            value[new] = value.pop(old)
        else:
            parent[key] = {new: value}
    elif op == "rename_key" and isinstance(parent, dict):
        new = draw(st.sampled_from([*SPEC_KINDS, "kind", "out", "k", "stride", "pad",
                                    "vars", "defaults", "blocks", "args", "shortcut"]))
        parent[new] = parent.pop(key)
    elif op == "duplicate" and isinstance(parent, list):
        parent.insert(key, parent[key])
    else:
        parent[key] = [parent[key]]
    return doc


def mutate_text(draw: Any, data: bytes) -> bytes:
    """One textual mutation of the spec's bytes."""
    op = draw(st.sampled_from(["truncate", "insert", "replace", "dup_line", "del_line",
                               "indent", "dedent", "tab", "swap_lines"]))
    n = len(data)
    if op == "truncate":
        return data[: draw(st.integers(0, n))]
    if op in ("insert", "replace"):
        at = draw(st.integers(0, max(n - 1, 0)))
        junk = draw(st.one_of(
            st.binary(min_size=1, max_size=4),
            st.sampled_from([b":", b"-", b"[", b"]", b"{", b"}", b"&a", b"*a", b"!!python",
                             b"<<", b"$", b"#", b"'", b'"', b"\t", b"\n", b"\r", b"\xef\xbb\xbf",
                             b"\x00", b"\xff", b"? ", b"%YAML 1.1\n", b"---\n", b"...\n",
                             b"\xe2\x80\xa8", b"|", b">", b"@", b"`", b",", b" "]),
        ))
        return data[:at] + junk + data[at + (op == "replace"):]
    lines = data.split(b"\n")
    i = draw(st.integers(0, len(lines) - 1))
    if op == "dup_line":
        lines.insert(i, lines[i])
    elif op == "del_line":
        del lines[i]
    elif op == "indent":
        lines[i] = b" " * draw(st.integers(1, 4)) + lines[i]
    elif op == "dedent":
        lines[i] = lines[i][draw(st.integers(1, 4)):] if lines[i][:1] == b" " else lines[i]
    elif op == "tab":
        lines[i] = b"\t" + lines[i].lstrip(b" ")
    else:
        j = draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines)


@st.composite
def mutated_specs(draw: Any) -> bytes:
    text, _ = draw(spec_texts())
    doc = yaml.safe_load(text)
    for _ in range(draw(st.integers(0, 2))):
        doc = mutate_data(draw, doc)
    style = draw(st.sampled_from([False, None, True]))
    data = yaml.safe_dump(doc, sort_keys=False, default_flow_style=style, width=100,
                          allow_unicode=True).encode("utf-8")
    for _ in range(draw(st.integers(0 if data != text.encode() else 1, 3))):
        data = mutate_text(draw, data)
    return data


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def check_outcome(file: str, code: int, err: str) -> None:
    """Exit 0, or exit 2 with only positioned error lines (or one usage-error line)."""
    assert "Traceback" not in err, err
    assert code in (0, 2), f"exit status {code}:\n{err}"
    if code == 0:
        return
    lines = err.splitlines()
    assert lines, "exit 2 with nothing on stderr"
    positioned = re.compile(re.escape(file) + r":\d+:\d+: .+")
    if all(positioned.fullmatch(line) for line in lines):
        return
    assert len(lines) == 1 and re.fullmatch(r"\S.*: .+", lines[0]), (
        f"not FILE:LINE:COL: message lines (nor one usage-error line):\n{err}")


@FUZZ
@given(data=mutated_specs())
def test_mutated_specs_never_crash(fuzz_dir: Path, data: bytes) -> None:
    path = fuzz_dir / "spec.yaml"
    path.write_bytes(data)
    for command in ("validate", "params"):
        start = time.perf_counter()
        code, _, err = run_cli(command, str(path))
        check_outcome(str(path), code, err)
        _record(f"mutated_{command}", time.perf_counter() - start)


NASTY_SETS = ["", "x", "-1", "0", "1e999", ".nan", "[1, 2]", "[]", "{a: 1}", "null", "true",
              "$", "$nope", "$w * 1e30", "1 / 0 $", "'", "[", "&a [*a]", "!!python/none ''",
              "99999999999999999999999", "2**10", "$w $w", "max()", "\x00", "é"]


@FUZZ
@given(spec=spec_texts(), name=st.sampled_from(["w", "flag", "nope", "", "w=", " w"]),
       value=st.one_of(st.sampled_from(NASTY_SETS), st.text(max_size=12)))
def test_nasty_set_values_never_crash(fuzz_dir: Path, spec: tuple[str, Any], name: str,
                                      value: str) -> None:
    path = fuzz_dir / "set.yaml"
    path.write_text(spec[0], encoding="utf-8")
    start = time.perf_counter()
    code, _, err = run_cli("params", str(path), "--set", f"{name}={value}")
    check_outcome(str(path), code, err)
    _record("nasty_set", time.perf_counter() - start)


# ---------------------------------------------------------------- crashes found here
#: reproducers of what this file found; each must give positioned lines and exit 2
FOUND = {
    # a control character made PyYAML's ReaderError print a second, unpositioned line
    "nul_first": (b"\x00netspec: 1\nname: t\ninput: [4]\nlayers: [relu]\n", "1:1"),
    "control_char": (b"netspec: 1\nname: t\x01\ninput: [4]\nlayers: [relu]\n", "2:8"),
    "control_char_late": (b"netspec: 1\nname: t\ninput: [4]\nlayers: [relu]\x7f\n", "4:15"),
    # a norm kind that is a list or a mapping: TypeError (unhashable) in resolve
    "norm_kind_list": (b"netspec: 1\nname: t\ninput: [4]\nlayers:\n  - norm: [batch]\n",
                       "5:11"),
    "norm_kind_mapping": (b"netspec: 1\nname: t\ninput: [4]\nlayers:\n"
                          b"  - norm: {kind: {a: 1}}\n", "5:18"),
    "norm_default_kind_list": (b"netspec: 1\nname: t\ninput: [4]\ndefaults:\n"
                               b"  norm: {kind: [layer]}\nlayers: [norm]\n", "5:16"),
    # a line separator or NEL quoted in a message made one error two lines (splitlines)
    "line_separator_kind": ('netspec: 1\nname: t\ninput: [4]\nlayers: ["relu\u2028x"]\n'
                            .encode(), "4:10"),
    "nel_in_expression": (b'netspec: 1\nname: t\ninput: [4]\n'
                          b'layers: [{linear: {out: "$no\\x85"}}]\n', "4:26"),
}


@pytest.mark.parametrize("name", sorted(FOUND))
def test_found_crashes(fuzz_dir: Path, name: str) -> None:
    data, where = FOUND[name]
    path = fuzz_dir / f"{name}.yaml"
    path.write_bytes(data)
    for command in ("validate", "params"):
        code, _, err = run_cli(command, str(path))
        check_outcome(str(path), code, err)
        assert code == 2 and err.startswith(f"{path}:{where}: "), err


#: --set values that crashed: a YAML alias that makes a list contain itself (RecursionError)
FOUND_SETS = ["&a [*a]", "&a [1, *a]", "[" * 60 + "1" + "]" * 60, "!!set {a}",
              # (and a form feed echoed in the message: two lines for splitlines)
              "$\x0c", "$w \u2028", "\x1c$"]


@pytest.mark.parametrize("value", FOUND_SETS)
def test_found_set_crashes(fuzz_dir: Path, value: str) -> None:
    path = fuzz_dir / "found_set.yaml"
    path.write_text("netspec: 1\nname: t\ninput: [4]\nvars: {w: 2}\n"
                    "layers: [{linear: {out: $w}}]\n")
    code, _, err = run_cli("params", str(path), "--set", f"w={value}")
    check_outcome(str(path), code, err)
    assert code == 2 and err.startswith("--set w"), err
