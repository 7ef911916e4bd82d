"""``netspec fit``: a spec's vars solved to a budget.

The reference for every choice is an exhaustive search written here: each point of the
grid loaded with ``netspec.loads`` and counted (counting itself is checked against
torch's ``numel`` in test_properties.py), the best picked by the rule the docs state.
Every figure the command reports is checked against ``netspec params`` of the spec it
writes.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import netspec
from netspec.cli import main
from netspec.fit_ranges import MAX_VALUES, domain_values
from netspec.memory import step_memory
from netspec.spec import FitRange

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"

#: a small network whose size follows three vars, one of which (groups) makes some
#: points invalid (channels that do not divide into the groups)
SMALL = """\
netspec: 1
name: small
input: [3, 32, 32]
vars: {width: 16, depth: 2, groups: 1, classes: 10}
fit:
  width: {min: 8, max: 64, multiple: 8}
  depth: {values: [1, 2, 3, 4]}
  groups: {values: [1, 2, 3, 4]}
blocks:
  unit:
    args: {c: required}
    layers:
      - conv: {out: $c, k: 3, groups: $groups, bias: false}
      - norm: batch
      - relu
layers:
  - conv: {out: $width, k: 3, stride: 2}
  - unit: {c: $width * 2, repeat: $depth}
  - global_avgpool
  - flatten
  - linear: {out: $classes}
"""
GRID = {"width": list(range(8, 65, 8)), "depth": [1, 2, 3, 4], "groups": [1, 2, 3, 4]}


def _fit(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = main(["fit", *args, "--format", "json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


def _counts(text: str, point: dict[str, Any], batch: int | None = None) -> dict[str, int] | None:
    """The figures of one point, or None where its network is not valid."""
    return _counted(text, tuple(point.items()), batch)


@functools.cache
def _counted(text: str, point: tuple[tuple[str, Any], ...], batch: int | None
             ) -> dict[str, int] | None:
    try:
        graph = netspec.loads(text, **dict(point))
    except netspec.NetspecError:
        return None
    c = graph.params()
    out = {"params": c.params, "macs": c.macs}
    if batch is not None:
        out["memory"] = step_memory(graph, batch).training_total
    return out


def _exhaustive(text: str, grid: dict[str, list[Any]], limits: dict[str, float],
                minimise: str | None = None, batch: int | None = None
                ) -> dict[str, int] | None:
    """The figures of the best point: within every limit, the largest by the first
    limit's figure, then MACs, then parameters (or the smallest in ``minimise``)."""
    first = next(iter(limits))
    best: tuple | None = None
    for values in itertools.product(*grid.values()):
        figures = _counts(text, dict(zip(grid, values, strict=True)), batch)
        if figures is None or any(figures[m] > lim for m, lim in limits.items()):
            continue
        key: tuple = (figures[first], figures["macs"], figures["params"])
        if minimise:
            key = (-figures[minimise], *key)
        if best is None or key > best[0]:
            best = (key, figures)
    return None if best is None else best[1]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fit") / "small.yaml"
    path.write_text(SMALL)
    return path


@pytest.fixture(scope="module")
def small_range(small: Path) -> tuple[int, int]:
    counts = [c["params"] for values in itertools.product(*GRID.values())
              if (c := _counts(SMALL, dict(zip(GRID, values, strict=True)))) is not None]
    return min(counts), max(counts)


# ------------------------------------------------------------------------ the choice
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fraction=st.floats(0.0, 1.2))
def test_the_chosen_params_are_the_exhaustive_searchs(
        capsys: pytest.CaptureFixture[str], small: Path, small_range: tuple[int, int],
        fraction: float) -> None:
    lo, hi = small_range
    budget = int(lo + fraction * (hi - lo))
    code, got, err = _fit(capsys, str(small), "--vary", "width,depth,groups",
                          "--params", str(budget))
    want = _exhaustive(SMALL, GRID, {"params": budget})
    assert want is not None and code == 0, err
    assert (got["params"], got["macs"]) == (want["params"], want["macs"])
    # the vars reported are a point that has those figures
    assert _counts(SMALL, got["vars"]) == {"params": got["params"], "macs": got["macs"]}
    assert got["tried"] == math.prod(len(v) for v in GRID.values())


@settings(max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(p=st.floats(0.2, 1.0), m=st.floats(0.2, 1.0))
def test_two_budgets_and_minimise_agree_with_the_exhaustive_search(
        capsys: pytest.CaptureFixture[str], small: Path, small_range: tuple[int, int],
        p: float, m: float) -> None:
    lo, hi = small_range
    params = int(lo + p * (hi - lo))
    macs = int(m * 60_000_000)
    code, got, err = _fit(capsys, str(small), "--vary", "width,depth,groups",
                          "--macs", str(macs), "--params", str(params))
    want = _exhaustive(SMALL, GRID, {"macs": macs, "params": params})
    if want is None:
        assert code == 2 and "no variant meets" in err
        return
    assert code == 0 and (got["params"], got["macs"]) == (want["params"], want["macs"])
    code, got, err = _fit(capsys, str(small), "--vary", "width,depth,groups", "--params",
                          str(params), "--minimise", "macs")
    want = _exhaustive(SMALL, GRID, {"params": params}, minimise="macs")
    assert want is not None and code == 0, err
    assert (got["params"], got["macs"]) == (want["params"], want["macs"])


def test_memory_budget_is_the_training_steps_memory(capsys: pytest.CaptureFixture[str],
                                                     small: Path) -> None:
    grid = {"width": GRID["width"], "depth": GRID["depth"]}
    limit = 40_000_000
    code, got, err = _fit(capsys, str(small), "--vary", "width,depth", "--memory", "40MB",
                          "--batch", "16")
    want = _exhaustive(SMALL, grid, {"memory": limit}, batch=16)
    assert code == 0 and want is not None, err
    assert got["memory_bytes"] == want["memory"] <= limit
    assert got["params"] == want["params"]


def test_points_that_are_not_networks_are_left_out_and_counted(
        capsys: pytest.CaptureFixture[str], small: Path) -> None:
    code, got, _err = _fit(capsys, str(small), "--vary", "width,groups", "--params", "1G")
    invalid = sum(_counts(SMALL, {"width": w, "groups": g}) is None
                  for w in GRID["width"] for g in GRID["groups"])
    assert code == 0 and invalid > 0 and got["invalid"] == invalid


# ------------------------------------------------------------------------ the output
def test_the_written_spec_counts_what_was_reported(tmp_path: Path, small: Path) -> None:
    out = tmp_path / "fitted.yaml"
    proc = _netspec("fit", str(small), "--vary", "width,depth", "--params", "50k",
                    "-o", str(out), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    reported = json.loads(proc.stdout)
    counted = json.loads(_netspec("params", str(out), "--format", "json").stdout)
    assert (counted["params"], counted["macs"]) == (reported["params"], reported["macs"])
    # only the solved values changed: comments and layout kept
    before, after = SMALL.splitlines(), out.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert len(changed) == 1 and changed[0][1].startswith("vars: {width: ")
    # an existing file is kept without --force, and nothing else is written
    again = _netspec("fit", str(small), "--vary", "width", "--params", "20k", "-o", str(out))
    assert again.returncode == 2 and "exists" in again.stderr
    assert out.read_text().splitlines() == after
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fitted.yaml"]


def test_a_family_grows_and_ends_at_the_fit(capsys: pytest.CaptureFixture[str],
                                            small: Path) -> None:
    code, got, err = _fit(capsys, str(small), "--vary", "width,depth", "--params", "100k",
                          "--family", "4")
    assert code == 0, err
    rows = got["family"]
    assert 2 <= len(rows) <= 4
    params = [r["params"] for r in rows]
    assert params == sorted(params) and len(set(params)) == len(params)
    assert all(p <= 100_000 for p in params)
    code, single, _ = _fit(capsys, str(small), "--vary", "width,depth", "--params", "100k")
    assert rows[-1]["params"] == single["params"]


def test_compound_scaling_multiplies_each_var_by_its_coefficient_to_phi(
        capsys: pytest.CaptureFixture[str], small: Path) -> None:
    spec = small.parent / "compound.yaml"
    spec.write_text(SMALL.replace("width: 16, depth: 2", "width: 16, depth: 2, scale: 1.0")
                    .replace("$width * 2", "int($width * $scale) * 2"))
    code, got, err = _fit(capsys, str(spec), "--compound", "width=1.2,scale=1.1",
                          "--params", "60k", "--phi", "0:6:0.5")
    assert code == 0, err
    phi = got["phi"]
    # the width's fit: range rounds it to a multiple of 8; the fraction is kept to 4 digits
    want_width = min(GRID["width"], key=lambda w: abs(w - 16 * 1.2 ** phi))
    assert got["vars"] == {"width": want_width, "scale": round(1.1 ** phi, 4)}
    assert _counts(spec.read_text(), got["vars"])["params"] == got["params"] <= 60_000
    # the next φ no longer fits, or leaves the width's range
    nxt = phi + 0.5
    width = min(GRID["width"], key=lambda w: abs(w - 16 * 1.2 ** nxt))
    after = _counts(spec.read_text(), {"width": width, "scale": round(1.1 ** nxt, 4)})
    assert 16 * 1.2 ** nxt > 68 or after is None or after["params"] > 60_000


# --------------------------------------------------------------------- bundled specs
@pytest.mark.parametrize("scale", [
    {"depth": 0.33, "width": 0.5, "max_channels": 1024},     # s
    {"depth": 0.67, "width": 0.75, "max_channels": 768},     # m
    {"depth": 1.0, "width": 1.0, "max_channels": 512},       # l
])
def test_yolov8_scales_are_found_from_their_budgets(capsys: pytest.CaptureFixture[str],
                                                    scale: dict[str, Any]) -> None:
    """Ultralytics' scales, counted with --set as the spec's header says, are what fit
    finds when given their parameter counts as budgets."""
    spec = SPECS / "yolov8n.yaml"
    params = netspec.load(spec, **scale).params().params
    code, got, err = _fit(capsys, str(spec), "--vary", "depth,width,max_channels",
                          "--params", str(params))
    assert code == 0, err
    assert got["vars"] == scale and got["params"] == params


def test_resnet50_width_and_depth_fit_ten_million(capsys: pytest.CaptureFixture[str]) -> None:
    spec = SPECS / "resnet50.yaml"
    code, got, err = _fit(capsys, str(spec), "--vary", "width,depth", "--params", "10M")
    assert code == 0, err
    doc = netspec.load(spec)
    widths = list(range(16, 257, 8))
    depths = [0.25 * k for k in range(1, 13)]
    assert got["tried"] == len(widths) * len(depths)
    assert netspec.load(spec, **got["vars"]).params().params == got["params"] <= 10_000_000
    # nothing larger fits: every wider network at this depth and every deeper one at this
    # width exceeds the budget
    w, d = got["vars"]["width"], got["vars"]["depth"]
    if w + 8 <= 256:
        assert netspec.load(spec, width=w + 8, depth=d).params().params > 10_000_000
    if d + 0.25 <= 3:
        assert netspec.load(spec, width=w, depth=d + 0.25).params().params > 10_000_000
    assert doc.vars["width"] == 64  # the bundled spec is unchanged: resnet50 by default


def test_compound_scaling_given_b1s_budget_finds_b1s_network(
        capsys: pytest.CaptureFixture[str]) -> None:
    """EfficientNet-B1 is the bundled B0 spec at torchvision's width 1.0, depth 1.1,
    resolution 240 (tests/with_torchvision checks that against torchvision). Compound
    scaling with the paper's coefficients, given B1's parameter count, finds B1's
    network: the same layers with the same parameters, one by one. Its vars are B1's
    within rounding for width and depth (the same channels and block counts); the
    resolution is where the compound curve leaves B1's network (B1's 240 is off it)."""
    spec = SPECS / "efficientnet_b0.yaml"
    b1 = netspec.load(spec, width=1.0, depth=1.1, resolution=240)
    code, got, err = _fit(capsys, str(spec), "--compound",
                          "width=1.1,depth=1.2,resolution=1.15", "--params",
                          str(b1.params().params))
    assert code == 0, err
    found = netspec.load(spec, **got["vars"])
    per_layer = [(n.op, sum(math.prod(s) for s in n.args.param_shapes(
        [g.nodes[i].shape for i in n.inputs]).values())) for g in (found,) for n in g.layers]
    want = [(n.op, sum(math.prod(s) for s in n.args.param_shapes(
        [b1.nodes[i].shape for i in n.inputs]).values())) for n in b1.layers]
    assert per_layer == want
    assert got["params"] == b1.params().params
    assert 1.0 <= got["vars"]["width"] < 1.05 and 1.0 < got["vars"]["depth"] <= 1.1


# ----------------------------------------------------------------------- latency
def test_latency_is_measured_for_a_few_variants(capsys: pytest.CaptureFixture[str],
                                                small: Path) -> None:
    code, got, err = _fit(capsys, str(small), "--vary", "width", "--latency", "10s")
    assert code == 0, err
    assert 1 <= len(got["measured"]) <= 4  # a binary search over 8 widths
    assert got["vars"]["width"] == 64 and 0 < got["latency_ms"] < 10_000
    code, _, err = _fit(capsys, str(small), "--vary", "width", "--latency", "1us")
    assert code == 2 and err.startswith("no variant meets --latency 0.00 ms: the fastest")


# --------------------------------------------------------------------------- domains
@given(lo=st.integers(-50, 50), span=st.integers(0, 200), step=st.integers(1, 30))
def test_integer_ranges_are_pythons_range(lo: int, span: int, step: int) -> None:
    assert domain_values(FitRange(min=lo, max=lo + span, step=step)) == \
        tuple(range(lo, lo + span + 1, step))


@given(lo=st.integers(0, 300), span=st.integers(0, 300), m=st.integers(1, 64))
def test_multiples_are_every_multiple_in_the_range(lo: int, span: int, m: int) -> None:
    want = tuple(v for v in range(lo, lo + span + 1) if v % m == 0)
    if want:
        assert domain_values(FitRange(min=lo, max=lo + span, multiple=m)) == want
    else:
        with pytest.raises(ValueError, match="no multiple"):
            domain_values(FitRange(min=lo, max=lo + span, multiple=m))


@given(lo=st.integers(0, 40), n=st.integers(0, 60), step=st.sampled_from([0.05, 0.1, 0.25]))
def test_fraction_ranges_land_on_their_steps(lo: int, n: int, step: float) -> None:
    start = round(lo * step, 2)  # as a person writes it
    values = domain_values(FitRange(min=start, max=start + n * step, step=step))
    assert len(values) == n + 1
    assert all(abs(v - (start + k * step)) < 1e-9 for k, v in enumerate(values))
    assert all(len(repr(v).partition(".")[2]) <= 2 for v in values)  # 0.3, not 0.30000000000000004


def test_too_many_values_are_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        domain_values(FitRange(min=0, max=MAX_VALUES, step=1))


# ---------------------------------------------------------------------------- errors
def _netspec(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "netspec", *args], capture_output=True,
                          text=True, env=env, timeout=120)


@pytest.mark.parametrize(("args", "message"), [
    (["--vary", "width", "--params", "5X"], "--params 5X: expected a number with a unit"),
    (["--vary", "width", "--params=-3M"], "--params -3M: expected a number"),
    (["--vary", "width", "--params", "0"], "--params 0: must be a finite number above 0"),
    (["--vary", "width", "--latency", "5"], "--latency 5: expected a number with a unit"),
    (["--vary", "widht", "--params", "5M"], "did you mean 'width'?"),
    (["--vary", "classes", "--params", "5M"], "gives classes no range"),
    (["--vary", "width=64:8", "--params", "5M"], "min 64 is above max 8"),
    (["--vary", "width", "--params", "100"], "no variant meets --params 100: the nearest has"),
    (["--vary", "width", "--memory", "1GB"], "--memory needs --batch"),
    (["--params", "5M"], "name the vars to solve"),
    (["--vary", "width"], "give at least one budget"),
    (["--vary", "width", "--compound", "width=1.1", "--params", "5M"], "not both"),
    (["--compound", "width=-1", "--params", "5M"], "the coefficient must be above 0"),
    (["--vary", "width=1:5000:1,classes=1:10", "--params", "5M"], "the limit is 20,000"),
])
def test_bad_input_is_one_line_and_exit_2(small: Path, args: list[str], message: str) -> None:
    proc = _netspec("fit", str(small), *args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert message in proc.stderr


def test_a_bad_fit_section_is_positioned(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMALL.replace("  groups: {values: [1, 2, 3, 4]}\n",
                                 "  grups: {values: [1, 2]}\n  classes: {min: 2}\n"))
    proc = _netspec("validate", str(bad))
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert f"{bad}:8:3: fit: 'grups' is not a var (did you mean 'groups'?)" in lines[0]
    assert any(line.startswith(f"{bad}:9:12: fit: classes: needs values, or min and max")
               for line in lines), lines


def test_the_tutorial_shows_what_fit_prints(tmp_path: Path) -> None:
    """docs/tutorial.md, section 10: each `netspec fit` shown prints what the page shows
    (timings aside), so the page cannot drift from the command."""
    tutorial = (ROOT / "docs" / "tutorial.md").read_text()
    section = tutorial.split("## 10. Fit a network to a budget", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```console\n\$ (netspec fit .*?)\n(.*?)```", section, re.S)
    assert len(blocks) == 3
    for command, shown in blocks:
        args = command.replace("../specs/", f"{SPECS}/").split()[1:]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.run([sys.executable, "-m", "netspec", *args], capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert _untimed(proc.stdout) == _untimed(shown), command


def _untimed(text: str) -> str:
    return re.sub(r"counted in [\d.]+ s", "counted in … s", text).strip()


def test_minimise_with_latency_keeps_the_smallest_that_is_fast_enough(
        capsys: pytest.CaptureFixture[str], small: Path) -> None:
    code, got, err = _fit(capsys, str(small), "--vary", "width", "--params", "1G",
                          "--latency", "10s", "--minimise", "macs")
    assert code == 0, err
    assert got["vars"]["width"] == 8 and len(got["measured"]) == 1  # the cheapest, at once
