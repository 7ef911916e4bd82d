"""Example-based tests of the core: expressions, vars and overrides, defaults, blocks,
residual and dense blocks, named skips, the CLI's torch-free commands and its reports.

Numbers and names here are worked out by hand from the documented semantics."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import textwrap
from math import prod
from pathlib import Path
from typing import Any

import pytest

import netspec
from netspec.errors import SpecError, UsageError
from netspec.expr import ExprError, evaluate

ROOT = Path(__file__).resolve().parent.parent
RESNET18 = ROOT / "specs" / "resnet18.yaml"


def spec(body: str, input: str = "[4, 8, 8]", head: str = "") -> str:
    """A spec text: the header, ``head`` (vars, defaults, blocks) and ``body`` (layers)."""
    return (f"netspec: 1\nname: t\ninput: {input}\n" + textwrap.dedent(head)
            + "layers:\n" + textwrap.indent(textwrap.dedent(body), "  "))


def load_error(text: str, **vars: Any) -> SpecError:
    """The one positioned error loading ``text`` raises."""
    with pytest.raises(netspec.NetspecError) as info:
        netspec.loads(text, **vars)
    err = info.value
    if isinstance(err, netspec.SpecErrors):
        assert len(err.errors) == 1, str(err)
        err = err.errors[0]
    assert isinstance(err, SpecError), repr(err)
    return err


def line_col(text: str, needle: str, nth: int = 0) -> tuple[int, int]:
    """1-based line and column of the nth occurrence of ``needle`` in ``text``."""
    at = -1
    for _ in range(nth + 1):
        at = text.index(needle, at + 1)
    before = text[:at]
    return before.count("\n") + 1, at - (before.rfind("\n") + 1) + 1


def where(err: SpecError) -> tuple[int, int]:
    assert err.pos is not None
    return err.pos.line, err.pos.col


def ops(g: netspec.Graph) -> list[tuple[str, str, tuple[int, ...]]]:
    return [(n.name, n.op, n.shape) for n in g.layers]


# ====================================================================== expressions
@pytest.mark.parametrize(("text", "value"), [
    ("2 + 3 * 4", 14),
    ("(2 + 3) * 4", 20),
    ("10 - 4 - 3", 3),            # left-associative
    ("2 * 3 // 4", 1),            # (2 * 3) // 4, same precedence, left to right
    ("2 + 9 % 4 * 3", 5),         # % binds like *
    ("-2 * 3", -6),
    ("7 - -2", 9),
    ("8 / 4 / 2", 1.0),
    ("7 / 2", 3.5),
    ("7 // 2", 3),
    ("-7 // 2", -4),              # floor division
    ("7 % 3", 1),
    ("-7 % 3", 2),
    ("7.5 // 2", 3.0),
    ("round(2.6)", 3),
    ("round(2.567, 2)", 2.57),
    ("min(3, 1, 2)", 1),
    ("max(3, 1, 2)", 3),
    ("max(8, round($c * 0.25))", 16),
    ("$c // 2 + $c % 3", 33),
    ("$c", 64),
    ("2.5e1", 25.0),
])
def test_expression_values(text: str, value: Any) -> None:
    got = evaluate(text, {"c": 64})
    assert got == value and type(got) is type(value)


def test_round_of_one_argument_is_an_int() -> None:
    assert evaluate("round($c * 0.3)", {"c": 10}) == 3
    assert isinstance(evaluate("round($c * 0.3)", {"c": 10}), int)


def test_a_lone_variable_keeps_its_type() -> None:
    assert evaluate("$mode", {"mode": "bilinear"}) == "bilinear"
    assert evaluate("$size", {"size": [2, 3]}) == [2, 3]


def test_unknown_variable_suggests_the_close_one() -> None:
    with pytest.raises(ExprError) as info:
        evaluate("1 + $widht", {"width": 4, "depth": 2})
    assert "unknown variable '$widht'" in str(info.value)
    assert "did you mean '$width'" in str(info.value)  # as the spec writes it
    assert info.value.offset == 4


def test_unknown_variable_with_nothing_close() -> None:
    with pytest.raises(ExprError) as info:
        evaluate("$zzz", {"width": 4})
    assert "unknown variable '$zzz'" in str(info.value)
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize("text", ["1 / 0", "1 // 0", "1 % 0", "$c / ($c - $c)", "1 / 0.0"])
def test_division_by_zero_is_an_error(text: str) -> None:
    with pytest.raises(ExprError, match="division by zero"):
        evaluate(text, {"c": 3})


@pytest.mark.parametrize("text", ["2 ** 3", "$c ** 2", "2**3"])
def test_power_is_refused(text: str) -> None:
    with pytest.raises(ExprError, match=r"'\*\*'"):
        evaluate(text, {"c": 3})


@pytest.mark.parametrize("text", [
    "$c.real", "$c.__class__", "(1).real", "$c .bit_length()", "$c[0]", "'a'", "$c if 1 else 2",
    "__import__('os')", "open(1)", "eval(1)", "$c == 1", "lambda: 1", "$c; 1",
])
def test_anything_but_arithmetic_is_refused(text: str) -> None:
    with pytest.raises(ExprError):
        evaluate(text, {"c": 3})


def test_length_is_bounded() -> None:
    ok = "1" + " + 1" * 124           # 497 characters
    assert len(ok) <= 500 and evaluate(ok, {}) == 125
    with pytest.raises(ExprError, match="longer than 500"):
        evaluate("1" + " + 1" * 200, {})


def test_magnitude_is_bounded() -> None:
    assert evaluate("1000000 * 1000000 * 1000", {}) == 10**15
    for text in ("1000000 * 1000000 * 10000", "1e16", "$c * 1e14", "-1e16 + 1",
                 "max(1e15 * 2, 1)"):
        with pytest.raises(ExprError, match="too large"):
            evaluate(text, {"c": 100})
    with pytest.raises(ExprError, match="finite"):
        evaluate("1e400", {})
    with pytest.raises(ExprError, match="too long"):
        evaluate("1" * 25, {})


def test_nesting_is_bounded() -> None:
    assert evaluate("(" * 32 + "1" + ")" * 32, {}) == 1
    with pytest.raises(ExprError, match="nested too deeply"):
        evaluate("(" * 33 + "1" + ")" * 33, {})
    with pytest.raises(ExprError, match="nested too deeply"):
        evaluate("max(" * 33 + "1" + ")" * 33, {})


def test_long_unary_chains_do_not_blow_the_stack() -> None:
    assert evaluate("-" * 498 + "1", {}) == 1


def test_round_with_a_huge_ndigits_finishes() -> None:
    """Every intermediate is bounded, so no expression can take long: round(int, -10**15)
    must not compute 10**(10**15). (Run in a child so a hang fails instead of blocking.)"""
    text = "round($c, -1000000000000000)"
    code = textwrap.dedent(f"""
        from netspec.expr import ExprError, evaluate
        try:
            v = evaluate({text!r}, {{"c": 5}})
        except ExprError:
            print("refused")
        else:
            assert abs(v) <= 10**15
            print("value")
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in ("refused", "value")


def test_expression_errors_point_into_the_expression() -> None:
    text = spec("- conv: {out: $w + $x, k: 3}\n", head="vars: {w: 4}\n")
    err = load_error(text)
    assert "unknown variable '$x'" in err.message
    assert where(err) == line_col(text, "$x")
    quoted = spec("- conv: {out: \"$w + $x\", k: 3}\n", head="vars: {w: 4}\n")
    assert where(load_error(quoted)) == line_col(quoted, "$x")


# ====================================================================== vars, --set
VARS_SPEC = """\
netspec: 1
name: v
input: [3, 16, 16]
vars:
  w: 4
  w2: $w * 2
  mode: nearest
layers:
  - conv: {out: $w, k: 3}
  - conv: {out: $w2, k: 3, stride: 2}
  - upsample: {scale: 2, mode: $mode}
  - global_avgpool
  - flatten
"""


@pytest.fixture
def vars_path(tmp_path: Path) -> Path:
    path = tmp_path / "v.yaml"
    path.write_text(VARS_SPEC)
    return path


def test_vars_are_evaluated_in_order(vars_path: Path) -> None:
    g = netspec.load(vars_path)
    assert g.vars == {"w": 4, "w2": 8, "mode": "nearest"}
    assert [n.shape for n in g.layers] == [(4, 16, 16), (8, 8, 8), (8, 16, 16), (8, 1, 1), (8,)]
    assert g["upsample1"].args.mode == "nearest"


def test_overrides_replace_vars_and_flow_into_later_ones(vars_path: Path) -> None:
    g = netspec.load(vars_path, w=3)
    assert g.vars == {"w": 3, "w2": 6, "mode": "nearest"}
    assert g.output_shape == (6,)
    assert g["conv1"].shape == (3, 16, 16)


def test_overriding_a_derived_var(vars_path: Path) -> None:
    assert netspec.load(vars_path, w2=5).output_shape == (5,)
    assert netspec.load(vars_path, w2="$w * 3").output_shape == (12,)
    assert netspec.load(vars_path, mode="bilinear")["upsample1"].args.mode == "bilinear"


def test_overriding_an_unknown_var_is_a_usage_error(vars_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        netspec.load(vars_path, wx=3)
    message = str(info.value)
    assert "'wx'" in message and "did you mean 'w'" in message
    assert "w, w2, mode" in message


def test_an_override_expression_sees_only_earlier_vars(vars_path: Path) -> None:
    with pytest.raises(UsageError, match=r"unknown variable '\$w2'"):
        netspec.load(vars_path, w="$w2")


def test_bad_override_values_are_reported_where_used(vars_path: Path) -> None:
    with pytest.raises(netspec.NetspecError, match="out"):
        netspec.load(vars_path, w=0)


def test_a_var_used_before_it_is_defined(tmp_path: Path) -> None:
    text = spec("- relu\n", head="vars: {a: $b, b: 2}\n")
    err = load_error(text)
    assert "unknown variable '$b'" in err.message
    assert where(err) == line_col(text, "$b")


def test_cli_set_overrides_like_load(vars_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "netspec", "params", str(vars_path), "--format", "json",
         "--set", "w=3", "--set", "mode=bilinear"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["output"] == [6]
    assert doc["params"] == netspec.load(vars_path, w=3).params().params


def test_cli_set_of_an_unknown_var_exits_2(vars_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "netspec", "validate", str(vars_path), "--set", "wx=3"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "did you mean 'w'" in done.stderr


# ====================================================================== defaults
def test_defaults_apply_to_every_layer_of_the_kind() -> None:
    text = spec("""\
        - conv: {out: 4, k: 3}
        - conv: {out: 4, k: 3, bias: true}
        - norm: batch
        - norm: layer
        """, head="defaults:\n  conv: {bias: false}\n  norm: {momentum: 0.5, eps: 0.001}\n")
    g = netspec.loads(text)
    assert "conv1.bias" not in g.param_shapes()            # from defaults
    assert g.param_shapes()["conv2.bias"] == (4,)          # explicit beats defaults
    assert g["bn1"].args.momentum == 0.5 and g["bn1"].args.eps == 0.001
    assert g["ln1"].args.eps == 0.001                      # layer norm has no momentum
    assert g.params().params == 9 * 4 * 4 + 9 * 4 * 4 + 4 + 2 * 4 + 2 * 4


def test_defaults_can_give_the_norm_kind() -> None:
    g = netspec.loads(spec("- norm\n- norm: layer\n", head="defaults:\n  norm: {kind: group, "
                                                           "groups: 2}\n"))
    assert [n.op for n in g.layers] == ["groupnorm", "layernorm"]
    assert g["gn1"].args.groups == 2


def test_defaults_values_may_be_expressions() -> None:
    g = netspec.loads(spec("- conv: {out: 4}\n",
                           head="vars: {k: 5}\ndefaults:\n  conv: {k: $k, bias: false}\n"))
    assert g["conv1"].args.k == 5
    assert g.params().params == 25 * 4 * 4


def test_a_bad_value_in_defaults_is_reported_in_defaults() -> None:
    text = spec("- conv: {out: 4}\n", head="defaults:\n  conv: {k: 0}\n")
    err = load_error(text)
    assert "k" in err.message
    assert where(err) == line_col(text, "0}")


def test_a_shape_error_caused_by_defaults_is_reported_in_defaults() -> None:
    text = spec("- conv: {out: 6, k: 3}\n", head="defaults:\n  conv: {groups: 3}\n")
    err = load_error(text)
    assert "groups=3" in err.message
    assert where(err) == line_col(text, "3}")


def test_an_unknown_option_in_defaults() -> None:
    text = spec("- conv: {out: 4, k: 3}\n", head="defaults:\n  conv: {kk: 3}\n")
    err = load_error(text)
    assert "no option 'kk'" in err.message and "did you mean 'k'" in err.message
    assert where(err) == line_col(text, "kk")


def test_an_unknown_kind_in_defaults() -> None:
    text = spec("- relu\n", head="defaults:\n  convv: {bias: false}\n")
    err = load_error(text)
    assert "unknown layer kind 'convv'" in err.message and "did you mean 'conv'" in err.message
    assert where(err) == line_col(text, "convv")


# ====================================================================== blocks
BLOCKS = """\
blocks:
  unit:
    args: {c: required, s: 1, e: $in}
    layers:
      - conv: {out: $c, k: 3, stride: $s}
      - conv: {out: $e, k: 1}
"""


def test_block_args_required_and_defaulted() -> None:
    g = netspec.loads(spec("- unit: {c: 6}\n- unit: {c: 2, s: 2, e: 5}\n", head=BLOCKS))
    assert ops(g) == [
        ("unit1.conv1", "conv", (6, 8, 8)),
        ("unit1.conv2", "conv", (4, 8, 8)),     # e defaults to $in: the block's input, 4
        ("unit2.conv1", "conv", (2, 4, 4)),
        ("unit2.conv2", "conv", (5, 4, 4)),
    ]
    assert g.scopes["unit1"].label == "unit(c=6, s=1, e=4)"


def test_a_missing_required_arg() -> None:
    text = spec("- unit: {s: 2}\n", head=BLOCKS)
    err = load_error(text)
    assert "block 'unit' needs arg 'c'" in err.message
    assert where(err)[0] == line_col(text, "- unit")[0]


def test_an_unknown_arg_suggests_the_close_one() -> None:
    text = spec("- unit: {c: 2, ss: 2}\n", head=BLOCKS)
    err = load_error(text)
    assert "has no arg 'ss'" in err.message and "did you mean 's'" in err.message
    assert where(err) == line_col(text, "ss")


def test_in_is_the_channel_count_at_each_use() -> None:
    g = netspec.loads(spec("- unit: {c: 3}\n- conv: {out: 7, k: 1}\n- unit: {c: 3}\n",
                           head=BLOCKS))
    assert g["unit1.conv2"].shape[0] == 4
    assert g["unit2.conv2"].shape[0] == 7


def test_repeat_names_its_children_by_index_and_counts_i() -> None:
    g = netspec.loads(spec("- unit: {c: 4, s: \"2 - min($i, 1)\", repeat: 3, as: stage}\n"
                           "- unit: {c: \"$i + 1\", repeat: 2}\n", head=BLOCKS))
    assert ops(g) == [
        ("stage.0.conv1", "conv", (4, 4, 4)),
        ("stage.0.conv2", "conv", (4, 4, 4)),
        ("stage.1.conv1", "conv", (4, 4, 4)),
        ("stage.1.conv2", "conv", (4, 4, 4)),
        ("stage.2.conv1", "conv", (4, 4, 4)),
        ("stage.2.conv2", "conv", (4, 4, 4)),
        ("unit1.0.conv1", "conv", (1, 4, 4)),
        ("unit1.0.conv2", "conv", (4, 4, 4)),
        ("unit1.1.conv1", "conv", (2, 4, 4)),
        ("unit1.1.conv2", "conv", (4, 4, 4)),
    ]
    assert g.scopes["stage"].kind == "repeat"
    assert g["stage.0.conv1"].args.stride == 2 and g["stage.1.conv1"].args.stride == 1


def test_repeat_of_a_plain_layer() -> None:
    g = netspec.loads(spec("- conv: {out: \"$i + 2\", k: 3, repeat: 3}\n- relu: {repeat: 2}\n"))
    assert ops(g) == [("conv1.0", "conv", (2, 8, 8)), ("conv1.1", "conv", (3, 8, 8)),
                      ("conv1.2", "conv", (4, 8, 8)), ("relu1.0", "relu", (4, 8, 8)),
                      ("relu1.1", "relu", (4, 8, 8))]


def test_the_resnet18_stages() -> None:
    g = netspec.load(RESNET18)
    assert g["layer1.0.conv1"].shape == (64, 56, 56)
    assert g["layer2.0.conv1"].args.stride == 2 and g["layer2.1.conv1"].args.stride == 1
    assert g["layer4.1.relu2"].shape == (512, 7, 7)
    assert g.params().params == 11_689_512


def test_a_block_that_uses_itself() -> None:
    text = spec("- a\n", head="blocks:\n  a:\n    layers:\n      - b\n  b:\n    layers:\n"
                               "      - a\n")
    err = load_error(text)
    assert "uses itself" in err.message and "a → b → a" in err.message


# ====================================================================== residual
RES_BODY = """\
- residual:
    body:
      - conv: {{out: {c}, k: 3, stride: {s}, bias: false}}
      - norm: {{kind: batch, momentum: 0.3}}
      - relu
      - conv: {{out: {c}, k: 3, bias: false}}
"""


def test_residual_identity_when_shapes_match() -> None:
    g = netspec.loads(spec(RES_BODY.format(c=4, s=1)))
    assert [n.name for n in g.layers] == ["conv1", "bn1", "relu1", "conv2", "add1"]
    add = g["add1"]
    assert add.op == "add" and add.inputs == ("conv2", "input")
    assert add.note == "residual, identity shortcut"
    assert not any(n.name.startswith("shortcut") for n in g)


def test_residual_projection_when_shapes_change() -> None:
    g = netspec.loads(spec(RES_BODY.format(c=8, s=2)))
    assert ops(g) == [
        ("conv1", "conv", (8, 4, 4)), ("bn1", "batchnorm", (8, 4, 4)),
        ("relu1", "relu", (8, 4, 4)), ("conv2", "conv", (8, 4, 4)),
        ("shortcut.conv1", "conv", (8, 4, 4)), ("shortcut.bn1", "batchnorm", (8, 4, 4)),
        ("add1", "add", (8, 4, 4)),
    ]
    proj = g["shortcut.conv1"].args
    assert (proj.out, proj.k, proj.stride, proj.padding, proj.bias) == (8, 1, 2, (0, 0), False)
    assert g["shortcut.conv1"].inputs == ("input",)
    assert g["shortcut.bn1"].args.momentum == 0.3          # the body's norm, as written
    assert g["add1"].inputs == ("conv2", "shortcut.bn1")
    assert g["add1"].note == ("residual, projection shortcut (1×1 conv, stride 2 + batchnorm): "
                              "[4, 8, 8] → [8, 4, 4]")
    assert g.scopes["shortcut"].kind == "shortcut"
    assert g.params().params == 9 * 4 * 8 + 2 * 8 + 9 * 8 * 8 + 4 * 8 + 2 * 8


def test_projection_without_a_norm_in_the_body_has_a_bias() -> None:
    g = netspec.loads(spec("- residual:\n    body: {conv: {out: 6, k: 3}}\n"))
    assert [n.name for n in g.layers] == ["conv1", "shortcut.conv1", "add1"]
    assert g["shortcut.conv1"].args.bias is True
    assert g["shortcut.conv1"].shape == (6, 8, 8)


def test_projection_with_unequal_strides() -> None:
    g = netspec.loads(spec("- residual:\n    body: {conv: {out: 4, k: 3, stride: [2, 1]}}\n"))
    assert g["shortcut.conv1"].args.stride == (2, 1)
    assert g["add1"].shape == (4, 4, 8)


def test_projection_for_features_is_linear() -> None:
    g = netspec.loads(spec("- residual:\n    body: [{linear: {out: 3}}, {norm: layer}]\n",
                           input="[5]"))
    assert ops(g) == [("fc1", "linear", (3,)), ("ln1", "layernorm", (3,)),
                      ("shortcut.fc1", "linear", (3,)), ("shortcut.ln1", "layernorm", (3,)),
                      ("add1", "add", (3,))]
    assert g["shortcut.fc1"].args.bias is False


def test_identity_shortcut_that_cannot_fit() -> None:
    text = spec("- residual:\n    body: {conv: {out: 6, k: 3}}\n    shortcut: identity\n")
    err = load_error(text)
    assert "identity shortcut cannot add" in err.message
    assert where(err) == line_col(text, "identity")


def test_residual_concat_joins_channels() -> None:
    g = netspec.loads(spec("- residual:\n    body: {conv: {out: 6, k: 3}}\n"
                           "    combine: concat\n"))
    assert g["cat1"].inputs == ("conv1", "input") and g["cat1"].shape == (10, 8, 8)


def test_residual_explicit_shortcut() -> None:
    g = netspec.loads(spec("- residual:\n    body: {conv: {out: 6, k: 3, stride: 2}}\n"
                           "    shortcut: [{maxpool: {k: 2}}, {conv: {out: 6, k: 1}}]\n"))
    assert ops(g) == [("conv1", "conv", (6, 4, 4)), ("shortcut.pool1", "maxpool", (4, 4, 4)),
                      ("shortcut.conv1", "conv", (6, 4, 4)), ("add1", "add", (6, 4, 4))]
    assert g["add1"].note == "residual, shortcut as written"


# ====================================================================== dense
def test_dense_concat_grows_by_the_growth_rate() -> None:
    g = netspec.loads(spec("- dense:\n    n: 3\n    body: [{norm: batch}, relu, "
                           "{conv: {out: 2, k: 3}}]\n"))
    assert [n.name for n in g.layers if n.op in ("concat", "conv")] == [
        "dense1.0.conv1", "dense1.cat1", "dense1.1.conv1", "dense1.cat2", "dense1.2.conv1",
        "dense1.cat3"]
    assert g["dense1.1.bn1"].shape == (4 + 2, 8, 8)
    assert g["dense1.2.bn1"].shape == (4 + 2 * 2, 8, 8)
    assert g.output_shape == (4 + 3 * 2, 8, 8)
    # each merge joins the last merge and the newest output (the input before the first)
    assert g["dense1.cat1"].inputs == ("input", "dense1.0.conv1")
    assert g["dense1.cat2"].inputs == ("dense1.cat1", "dense1.1.conv1")
    assert g["dense1.cat3"].inputs == ("dense1.cat2", "dense1.2.conv1")
    assert g.scopes["dense1"].kind == "dense" and g.scopes["dense1.1"].kind == "dense-layer"


def test_dense_add_keeps_the_shape_and_names_count_per_scope() -> None:
    g = netspec.loads(spec("- dense: {n: 2, combine: add, body: {conv: {out: 4, k: 1}}}\n"
                           "- dense: {n: 1, body: {conv: {out: 1, k: 1}}, as: grow}\n"))
    assert ops(g) == [("dense1.0.conv1", "conv", (4, 8, 8)), ("dense1.add1", "add", (4, 8, 8)),
                      ("dense1.1.conv1", "conv", (4, 8, 8)), ("dense1.add2", "add", (4, 8, 8)),
                      ("grow.0.conv1", "conv", (1, 8, 8)), ("grow.cat1", "concat", (5, 8, 8))]


# ====================================================================== named skips
def test_named_skips_concat_and_add() -> None:
    g = netspec.loads(spec("""\
        - conv: {out: 4, k: 3, as: enc}
        - maxpool: {k: 2}
        - upsample: 2
        - concat: [enc]
        - conv: {out: 4, k: 1}
        - add: {from: [enc], as: merged}
        """))
    assert g["enc"].op == "conv"
    assert g["cat1"].inputs == ("upsample1", "enc") and g["cat1"].shape == (8, 8, 8)
    assert g["merged"].inputs == ("conv1", "enc") and g["merged"].shape == (4, 8, 8)


def test_a_named_repeat_refers_to_its_last_output() -> None:
    g = netspec.loads(spec("- conv: {out: \"$i + 1\", k: 3, repeat: 2, as: r}\n"
                           "- relu\n- concat: [r]\n"))
    assert g["cat1"].inputs == ("relu1", "r.1") and g["cat1"].shape == (4, 8, 8)


def test_a_list_naming_the_current_tensor_is_taken_as_written() -> None:
    g = netspec.loads(spec("- conv: {out: 2, k: 3, as: a}\n- conv: {out: 3, k: 3, as: b}\n"
                           "- concat: [b, a]\n- concat: [a, in, b]\n"))
    assert g["cat1"].inputs == ("b", "a")  # b is the current tensor: no second copy
    assert g["cat2"].inputs == ("cat1", "a", "input", "b")  # cat1 is current, unnamed


def test_named_residual_and_block_can_be_merged_later() -> None:
    g = netspec.loads(spec("- residual: {body: {conv: {out: 4, k: 3}}, as: res}\n"
                           "- unit: {c: 4, as: u}\n- add: [res, u]\n", head=BLOCKS))
    assert g["add1"].inputs == ("res", "u.conv2")  # u is current: the list as written


def test_an_unknown_name_suggests_the_close_one() -> None:
    text = spec("- conv: {out: 4, k: 3, as: enc1}\n- add: [enc2]\n")
    err = load_error(text)
    assert "no earlier layer is named 'enc2'" in err.message
    assert "did you mean 'enc1'" in err.message
    assert where(err) == line_col(text, "enc2")


def test_names_inside_a_block_stay_inside() -> None:
    head = "blocks:\n  b:\n    layers:\n      - conv: {out: 4, k: 3, as: inner}\n"
    g = netspec.loads(spec("- b\n- b\n", head=head))
    assert [n.name for n in g.layers] == ["b1.inner", "b2.inner"]
    err = load_error(spec("- b\n- add: [inner]\n", head=head))
    assert "no earlier layer is named 'inner'" in err.message


def test_a_name_used_twice_in_a_scope() -> None:
    text = spec("- conv: {out: 4, k: 3, as: a}\n- relu: {as: a}\n")
    err = load_error(text)
    assert "'a' is already used" in err.message
    assert where(err) == line_col(text, "a}", 1)


# ====================================================================== shapes the core refuses
def test_instance_norm_needs_more_than_one_position() -> None:
    """Instance statistics over one position are undefined (torch refuses the input), so
    the core must refuse the spec, with the position of the norm."""
    text = spec("- global_avgpool\n- norm: instance\n")
    err = load_error(text)
    assert "instance" in err.message
    assert where(err)[0] == line_col(text, "norm: instance")[0]


# ====================================================================== CLI
TORCH_FREE = textwrap.dedent("""
    import runpy, sys
    sys.argv = ["netspec", *sys.argv[1:]]
    try:
        runpy.run_module("netspec", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as e:
        code = e.code
    heavy = sorted(m for m in ("torch", "onnx", "onnxruntime") if m in sys.modules)
    print("HEAVY=" + ",".join(heavy), file=sys.stderr)
    sys.exit(code)
""")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", TORCH_FREE, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


#: the commands docs/architecture.md says load no torch/onnx (tests/test_doc_lists.py
#: checks the two lists agree), each run here in a fresh process
TORCH_FREE_COMMANDS = ("validate", "params", "schema", "graph", "diff", "fit")


@pytest.mark.parametrize("args", [
    ("validate", "specs/resnet18.yaml"),
    ("params", "specs/resnet18.yaml"),
    ("params", "specs/resnet18.yaml", "--format", "json", "--depth", "1"),
    ("params", "specs/resnet18.yaml", "--batch", "8"),
    ("schema",),
    ("graph", "specs/resnet18.yaml", "-o", "{tmp}/r.dot"),
    ("diff", "specs/resnet18.yaml", "--set-a", "width=64"),
    ("fit", "specs/resnet50.yaml", "--vary", "width", "--params", "10M"),
])
def test_torch_free_commands_never_import_torch_or_onnx(args: tuple[str, ...],
                                                         tmp_path: Path) -> None:
    done = run_cli(*(a.format(tmp=tmp_path) for a in args))
    assert done.returncode == 0, done.stderr
    assert "HEAVY=\n" in done.stderr, done.stderr
    assert done.stdout.strip()


def test_schema_is_json_with_a_definition_per_kind() -> None:
    done = run_cli("schema")
    schema = json.loads(done.stdout)
    kinds = ["conv", "conv_transpose", "linear", "norm", "dropout", "relu", "relu6", "gelu",
             "silu", "sigmoid", "tanh", "leaky_relu", "maxpool", "avgpool", "adaptive_avgpool",
             "global_avgpool", "flatten", "upsample", "add", "concat"]
    defs = schema["$defs"]
    for kind in kinds:
        assert kind in defs, kind
    layer_kinds = defs["layer"]["anyOf"][1]["properties"]
    assert set(kinds) | {"residual", "dense"} <= set(layer_kinds)
    assert set(defs["norm"]["properties"]["kind"]["enum"]) == {
        "batch", "layer", "instance", "group", "rms"}
    assert {"out", "k", "stride", "pad", "dilation", "groups", "bias"} <= set(
        defs["conv"]["properties"])


def params_json(*extra: str) -> dict[str, Any]:
    done = run_cli("params", "specs/resnet18.yaml", "--format", "json", *extra)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_params_json_totals_add_up() -> None:
    doc = params_json()
    assert {"name", "params", "buffers", "macs", "layers"} <= set(doc)
    assert doc["name"] == "resnet18"
    assert isinstance(doc["params"], int) and doc["params"] == 11_689_512
    assert isinstance(doc["layers"], list)
    g = netspec.load(RESNET18)
    assert len(doc["layers"]) == len(g.layers)
    for key in ("params", "buffers", "macs"):
        assert doc[key] == sum(row[key] for row in doc["layers"]), key
    assert doc["buffers"] == 9600
    assert doc["layers"][0] == {
        "name": "conv1", "kind": "conv(out=64, k=7, stride=2, bias=False)",
        "shape": [64, 112, 112], "params": 7 * 7 * 3 * 64, "buffers": 0,
        "macs": 112 * 112 * 64 * 3 * 49, "formula": "7²·3·64 + 0", "note": None}


def test_params_depth_0_collapses_to_top_level_rows() -> None:
    full, top = params_json(), params_json("--depth", "0")
    names = [row["name"] for row in top["layers"]]
    assert names == ["conv1", "bn1", "relu1", "pool1", "layer1", "layer2", "layer3", "layer4",
                     "pool2", "flatten1", "fc"]
    for key in ("params", "buffers", "macs"):
        assert top[key] == full[key] == sum(row[key] for row in top["layers"]), key
    layer2 = next(row for row in top["layers"] if row["name"] == "layer2")
    assert layer2["params"] == sum(row["params"] for row in full["layers"]
                                   if row["name"].startswith("layer2."))
    assert layer2["shape"] == [128, 28, 28]


def test_params_csv_parses() -> None:
    done = run_cli("params", "specs/resnet18.yaml", "--format", "csv")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert list(rows[0]) == ["name", "kind", "shape", "params", "buffers", "macs", "formula",
                             "note"]
    assert sum(int(r["params"]) for r in rows) == 11_689_512
    assert rows[0]["kind"] == "conv(out=64, k=7, stride=2, bias=False)"
    assert rows[0]["shape"] == "[64, 112, 112]"
    projection = next(r for r in rows if r["name"] == "layer2.0.add1")
    assert "projection shortcut" in projection["note"]
    top = list(csv.DictReader(io.StringIO(
        run_cli("params", "specs/resnet18.yaml", "--format", "csv", "--depth", "0").stdout)))
    assert all("." not in r["name"] for r in top)
    assert sum(int(r["params"]) for r in top) == 11_689_512


def test_params_negative_depth_is_a_usage_error() -> None:
    done = run_cli("params", "specs/resnet18.yaml", "--depth", "-1")
    assert done.returncode == 2 and "--depth" in done.stderr


def test_validate_reports_a_positioned_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    text = spec("- conv: {out: 4, k: 3, groups: 3}\n")
    path.write_text(text)
    done = run_cli("validate", str(path))
    assert done.returncode == 2
    line, col = line_col(text, "3}")
    assert f"{path}:{line}:{col}: conv: groups=3 does not divide" in done.stderr


def test_counts_without_building_match_the_formulas() -> None:
    g = netspec.loads(spec("- conv: {out: 6, k: [3, 1], groups: 2}\n- flatten\n"
                           "- linear: {out: 5, bias: false}\n"))
    assert g.params().params == 3 * 1 * (4 // 2) * 6 + 6 + 6 * 8 * 8 * 5
    assert g.params().macs == prod((6, 8, 8)) * 2 * 3 + 6 * 8 * 8 * 5
