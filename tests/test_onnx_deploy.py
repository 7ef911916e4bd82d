"""Export for deployment (issue 13): every opset from 11, symbolic image size, fp16 and
int8. Every comparison is against an independent reference: the torch module in eval
mode run here, formulas written here, or the fp32 model's outputs in onnxruntime; the
figures export reports are checked against figures the test computes itself.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from strategies import ALL_KINDS, single_layer_specs
from test_onnx_export import OP_CASES, spec, torch_eval, trained

import netspec
from netspec.backends.onnx import opset as ops
from netspec.backends.onnx.export import export_onnx
from netspec.backends.onnx.fold import bn_affine
from netspec.cli import main
from netspec.kinds import FAMILIES
from netspec.weights import save_weights, spec_metadata

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent
NEWEST = onnx.defs.onnx_opset_version()
#: each side of every boundary, the oldest and the newest
SWEEP = sorted({ops.MIN_OPSET, NEWEST, *(b - 1 for b in ops.BOUNDARIES), *ops.BOUNDARIES})
#: ops this file adds to test_onnx_export's cases: DFL's softmax over bins (an axis
#: that is neither the last nor the channels)
EXTRA_CASES = {"dfl_bins": ("- conv: {out: 12, k: 1}\n- dfl: 3", "[4, 5, 6]")}


def session(model: onnx.ModelProto | bytes | Path) -> ort.InferenceSession:
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort.InferenceSession(str(data) if isinstance(data, Path) else data,
                                providers=["CPUExecutionProvider"])


def rel_diff(ours: np.ndarray, ref: np.ndarray) -> float:
    assert ours.shape == ref.shape and np.isfinite(ours).all()
    return float(np.abs(ours.astype(np.float64) - ref).max()) / max(1.0, float(np.abs(ref).max()))


def ops_of(model: onnx.ModelProto) -> set[str]:
    return {n.op_type for n in model.graph.node}


# ------------------------------------------------------------------ opsets 11 … newest
def test_opsets_accepted_are_11_to_the_installed_onnx() -> None:
    assert ops.MIN_OPSET == 11 and ops.MAX_OPSET == NEWEST
    with pytest.raises(netspec.NetspecError):
        ops.check_opset(10)
    with pytest.raises(netspec.NetspecError):
        ops.check_opset(NEWEST + 1)


@pytest.mark.parametrize("case", [*OP_CASES, *EXTRA_CASES])
def test_every_op_on_each_side_of_every_boundary(case: str) -> None:
    """Each op at 11, at the newest opset, and at b−1 and b for every boundary b where
    some op changes form: onnxruntime equals torch (eval) on the same input."""
    text, inp = {**OP_CASES, **EXTRA_CASES}[case]
    graph = netspec.loads(spec(text, inp))
    weights = trained(graph)
    x = np.random.default_rng(3).standard_normal((2, *graph.input_shape)).astype(np.float32)
    refs = torch_eval(graph, weights, x)
    for opset in SWEEP:
        model, _ = export_onnx(graph, weights, opset=opset, verify=False)
        assert model.opset_import[0].version == opset
        outs = session(model).run(None, {"input": x})
        for ours, ref in zip(outs, refs, strict=True):
            assert rel_diff(ours, ref) < 1e-4, (case, opset)


#: op type → (the case that uses it, the first opset emitting it as one operator)
SINGLE_OPERATORS = {
    "HardSwish": ("hard_activations", ops.HARDSWISH_OPSET),
    "LayerNormalization": ("layernorm", ops.LAYERNORM_OPSET),
    "Mish": ("hard_activations", ops.MISH_OPSET),
    "Gelu": ("activations", ops.GELU_OPSET),
    "GroupNormalization": ("groupnorm", ops.GROUPNORM_OPSET),
    "RMSNormalization": ("rmsnorm", ops.RMSNORM_OPSET),
}


@pytest.mark.parametrize("op_type", SINGLE_OPERATORS)
def test_single_operator_only_from_its_opset(op_type: str) -> None:
    case, first = SINGLE_OPERATORS[op_type]
    before, *_ = _export_case(case, first - 1)
    at, *_ = _export_case(case, first)
    assert op_type not in ops_of(before) and op_type in ops_of(at)


def _export_case(case: str, opset: int) -> tuple[onnx.ModelProto, netspec.Graph]:
    text, inp = {**OP_CASES, **EXTRA_CASES}[case]
    graph = netspec.loads(spec(text, inp))
    model, _ = export_onnx(graph, trained(graph), opset=opset, verify=False)
    return model, graph


def test_split_sizes_and_reduce_axes_move_to_inputs() -> None:
    for opset in (12, 13):
        model, _ = _export_case("split_shuffle", opset)
        splits = [n for n in model.graph.node if n.op_type == "Split"]
        assert splits and all((len(n.input) == 2) == (opset >= 13) for n in splits)
        assert all(any(a.name == "split" for a in n.attribute) == (opset < 13) for n in splits)
    for opset in (17, 18):
        model, _ = _export_case("rmsnorm", opset)
        means = [n for n in model.graph.node if n.op_type == "ReduceMean"]
        assert means and all((len(n.input) == 2) == (opset >= 18) for n in means)


def test_softmax_over_channels_before_13_is_not_over_everything() -> None:
    """Opset 11's Softmax(axis=1) on [N, C, H, W] would normalise C·H·W values together;
    the export must normalise each position's C values: exp(x) / Σ_c exp(x), written here."""
    graph = netspec.loads(spec("- softmax", "[5, 3, 4]"))
    x = np.random.default_rng(0).standard_normal((2, 5, 3, 4)).astype(np.float32)
    want = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    for opset in (11, 12, 13):
        model, _ = export_onnx(graph, {}, opset=opset, verify=False)
        (y,) = session(model).run(None, {"input": x})
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
        assert ("Transpose" in ops_of(model)) == (opset < 13)


def test_hardswish_and_layernorm_formulas_at_opset_11() -> None:
    """x·relu6(x+3)/6, and (x − mean)/√(var + ε) over the features (biased variance)."""
    graph = netspec.loads(spec("- hardswish\n- norm: {kind: layer, affine: none, eps: 0.01}",
                               "[6]"))
    x = np.random.default_rng(1).normal(0, 3, (4, 6)).astype(np.float32)
    h = x * np.clip(x + 3, 0, 6) / 6
    want = (h - h.mean(1, keepdims=True)) / np.sqrt(h.var(1, keepdims=True) + 0.01)
    model, _ = export_onnx(graph, {}, opset=11, verify=False)
    (y,) = session(model).run(None, {"input": x})
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
    assert not {"HardSwish", "LayerNormalization"} & ops_of(model)


def test_resnet18_at_opsets_11_and_13_equals_opset_17(tmp_path: Path) -> None:
    path = ROOT / "specs" / "resnet18.yaml"
    graph = netspec.load(path)
    w = tmp_path / "w.safetensors"
    save_weights(w, trained(graph), spec_metadata(graph))
    files = {}
    for opset in (11, 13, 17):
        files[opset] = tmp_path / f"r{opset}.onnx"
        assert main(["export", str(path), "--weights", str(w), "-o", str(files[opset]),
                     "--opset", str(opset), "--no-verify"]) == 0
        assert onnx.load(files[opset]).opset_import[0].version == opset
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    ref = session(files[17]).run(None, {"input": x})[0]
    for opset in (11, 13):
        np.testing.assert_allclose(session(files[opset]).run(None, {"input": x})[0], ref,
                                   rtol=0, atol=1e-5)


# ------------------------------------------------------------------ bad input: exit 2
def _refused(capsys: pytest.CaptureFixture[str], argv: list[str], tmp_path: Path,
             status: int = 2) -> str:
    assert main(argv) == status
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".onnx"]
    return err


def test_bad_deployment_flags_exit_2_with_one_line(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    digits = str(ROOT / "specs" / "digits_cnn.yaml")
    out = str(tmp_path / "m.onnx")
    err = _refused(capsys, ["export", digits, "-o", out, "--precision", "int8"], tmp_path)
    assert "--calibration-data" in err
    err = _refused(capsys, ["export", str(ROOT / "specs" / "resnet18.yaml"), "-o", out,
                            "--precision", "int8", "--calibration-data", "digits"], tmp_path)
    assert "[1, 8, 8]" in err or "shape" in err
    err = _refused(capsys, ["export", digits, "-o", out, "--io-dtype", "fp16"], tmp_path)
    assert "--precision fp16" in err
    err = _refused(capsys, ["export", digits, "-o", out, "--precision", "int8",
                            "--calibration-data", "random", "--opset", "11"], tmp_path)
    # int8 has no form at 11: the layer and the lowest opset that works
    assert "conv_bn1.conv1" in err and "--opset 13" in err and "digits_cnn.yaml:" in err
    npz = tmp_path / "x.npz"
    np.savez(npz, x=np.zeros((4, 3, 8, 8), np.float32), y=np.zeros(4, np.int64))
    _refused(capsys, ["export", digits, "-o", out, "--precision", "int8",
                      "--calibration-data", str(npz)], tmp_path)
    err = _refused(capsys, ["export", digits, "-o", out, "--calibration-data", "digits"],
                   tmp_path)
    assert "--precision int8" in err
    _refused(capsys, ["export", digits, "-o", out, "--precision", "int8",
                      "--calibration-data", "digits", "--max-drop", "-1"], tmp_path)


def test_int8_held_out_split_is_the_one_training_recorded() -> None:
    """A checkpoint trained on digits with 30 % held out (seed 5): int8 judges on those
    539 images, not on a default 20 % split that overlaps the training images."""
    from netspec.commands.export_deploy import _training_split, load_calibration

    record = {"netspec.data": json.dumps({"data": "digits", "seed": 5, "val_fraction": 0.3,
                                          "val_data": None})}
    assert _training_split(record, "digits", 0) == (0.3, 5)
    assert _training_split(record, "other.npz", 0) == (0.2, 0)  # not the data it trained on
    assert _training_split({}, "digits", 7) == (0.2, 7)
    graph = netspec.load(ROOT / "specs" / "digits_cnn.yaml")
    data = load_calibration(graph, "digits", seed=5, val_fraction=0.3)
    assert data.heldout is not None and len(data.heldout) == round(1797 * 0.3)
    order = np.random.default_rng(5).permutation(1797)  # train's split, written out
    from netspec.train.data import load_digits_arrays

    x, _ = load_digits_arrays(graph)
    np.testing.assert_array_equal(data.eval_x[data.heldout], x[np.sort(order[:539])])


def test_dynamic_size_refused_at_the_layer_that_fixes_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = tmp_path / "fixed.yaml"
    s.write_text("netspec: 1\nname: fixed\ninput: [3, 8, 8]\nlayers:\n"
                 "  - conv: {out: 4, k: 3}\n  - flatten\n  - linear: {out: 5, as: fc}\n")
    err = _refused(capsys, ["export", str(s), "-o", str(tmp_path / "m.onnx"),
                            "--dynamic-size"], tmp_path)
    assert err.startswith(f"{s}:7:5:") and "linear 'fc'" in err and "flatten" in err
    for text, inp, layer in [
            ("- adaptive_avgpool: 2", "[3, 8, 8]", "adaptive_avgpool"),
            ("- maxpool: {k: 2, stride: 3, ceil: true}", "[3, 8, 8]", "maxpool"),
            ("- norm: {kind: layer, affine: element}", "[3, 8, 8]", "layernorm"),
            ("- linear: {out: 3}", "[8]", "height")]:
        with pytest.raises(netspec.SpecError, match=layer):
            export_onnx(netspec.loads(spec(text, inp)), {}, dynamic=True, verify=False)


# ------------------------------------------------------------------ dynamic H, W
def test_unet_dynamic_size_runs_at_two_sizes(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = ROOT / "specs" / "unet.yaml"
    graph = netspec.load(path, width=4)
    w = tmp_path / "w.safetensors"
    weights = trained(graph)
    save_weights(w, weights, spec_metadata(graph))
    out = tmp_path / "unet.onnx"
    assert main(["export", str(path), "--set", "width=4", "--weights", str(w), "-o", str(out),
                 "--dynamic-size", "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["verification"]["sizes"] == [[3, 64, 64], [3, 128, 128]]
    model = onnx.load(out)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["netspec.dynamic_axes"])["input"] == {
        "0": "batch", "2": "height", "3": "width"}
    s = session(out)
    rng = np.random.default_rng(0)
    for size in (64, 48, 128):
        x = rng.standard_normal((1, 3, size, size)).astype(np.float32)
        (y,) = s.run(None, {"input": x})
        assert y.shape == (1, 2, size, size)
        assert rel_diff(y, torch_eval(graph, weights, x)[0]) < 1e-4


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h=st.integers(3, 12), w=st.integers(3, 12), case=st.sampled_from(
    ["hard_activations", "groupnorm", "split_shuffle", "convnext_parts", "upsample",
     "dfl_bins"]))
def test_dynamic_model_equals_torch_at_any_size(h: int, w: int, case: str) -> None:
    """Fully convolutional cases, exported once at their spec's size with symbolic H, W,
    equal torch at a size hypothesis picks (opset 11: the decompositions' Reshapes too)."""
    text, inp = {**OP_CASES, **EXTRA_CASES}[case]
    graph = netspec.loads(spec(text, inp))
    weights = trained(graph)
    for opset in (11, NEWEST):
        model, _ = export_onnx(graph, weights, opset=opset, dynamic=True, verify=False)
        x = np.random.default_rng(h * w).standard_normal(
            (1, graph.input_shape[0], h, w)).astype(np.float32)
        outs = session(model).run(None, {"input": x})
        for ours, ref in zip(outs, torch_eval(graph, weights, x), strict=True):
            assert rel_diff(ours, ref) < 1e-4


#: kinds drawn on a [C, H, W] input, or on the tokens of one (``tokens`` first)
RANK3_KINDS = tuple(k for k in ALL_KINDS if k != "linear"  # drawn on [F] inputs only
                    and any(r in c.ranks for c in FAMILIES[k].values() for r in (2, 3)))


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (v[0], v[1])


def fixes_the_size(node: netspec.Node) -> bool:
    """Whether a layer reading a [C, H, W] map bakes the spec's H, W into the model, by
    the rules written out here: a flatten's feature count; an adaptive pool's windows
    (except to 1×1); a layer norm's per-element γ; a map's H, W; a position table's
    count; a ceil-mode pool whose last window may start in the right padding at some
    size (torch drops it, ONNX keeps it); windows' padding and masks."""
    a: Any = node.args
    # C·H·W features; H, W; N positions; windows padded and masked for H, W
    if node.op in ("flatten", "map", "pos_embed", "window_attention"):
        return True
    if node.op == "adaptive_avgpool":
        return _pair(a.size) != (1, 1)
    if node.op == "layernorm":
        return a.affine == "element"
    if node.op in ("maxpool", "avgpool") and a.ceil:
        k, s, p = _pair(a.k), _pair(a.stride if a.stride is not None else a.k), _pair(a.pad)
        d = _pair(getattr(a, "dilation", 1))
        return any(s[i] + p[i] > d[i] * (k[i] - 1) + 1 for i in range(2))
    return False


@pytest.mark.parametrize("kind", RANK3_KINDS)
@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.large_base_example])
@given(data=st.data())
def test_symbolic_size_refuses_exactly_what_fixes_it(kind: str, data: st.DataObject) -> None:
    """A layer on a [C, H, W] input exported with a symbolic H, W: refused, at that layer,
    exactly when it fixes the size (the rules above); otherwise the model equals torch
    at the spec's size and at twice it (export's own check, against the torch module
    built at that size)."""
    layer = data.draw(single_layer_specs((kind,)))
    graph = netspec.loads(layer.text)
    if len(graph.input_shape) != 3:
        event("input [F]")
        return
    node = graph.layers[-1]  # a layer on tokens follows the ``tokens`` that makes them
    if fixes_the_size(node):
        event("refused")
        with pytest.raises(netspec.SpecError) as refused:
            export_onnx(graph, trained(graph), dynamic=True, verify=False)
        assert refused.value.message.startswith(f"--dynamic-size: {node.op} '{node.name}'")
        assert refused.value.pos == node.pos
    else:
        event("exported")
        export_onnx(graph, trained(graph), dynamic=True, verify=True)


# ------------------------------------------------------------------ fp16
def test_fp16_folds_in_float64_and_rounds_once() -> None:
    """The conv's folded weight is W·γ/√(var+ε) computed here in float64, then rounded
    to half once; every float constant is half; fp32 I/O with a Cast at each edge."""
    graph = netspec.loads(spec("- conv: {out: 4, k: 3, as: c}\n- norm: batch\n- relu",
                               "[3, 6, 6]"))
    weights = trained(graph)
    model, report = export_onnx(graph, weights, precision="fp16")
    s, t = bn_affine(weights["bn1.running_mean"], weights["bn1.running_var"], 1e-5,
                     weights["bn1.weight"], weights["bn1.bias"])
    want_w = (weights["c.weight"].astype(np.float64) * s[:, None, None, None]).astype(np.float16)
    want_b = (weights["c.bias"].astype(np.float64) * s + t).astype(np.float16)
    got = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    np.testing.assert_array_equal(got["c.weight"], want_w)
    np.testing.assert_array_equal(got["c.bias"], want_b)
    assert all(a.dtype == np.float16 for a in got.values() if a.dtype.kind == "f")
    io = [v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.output)]
    assert io == [onnx.TensorProto.FLOAT] * 2
    v = report.verification
    assert v is not None and v.ok and v.tolerance == 1e-2
    assert {p.key: p.value for p in model.metadata_props}["netspec.precision"] == "fp16"


@pytest.mark.parametrize("io_dtype", [None, "fp16"])
def test_fp16_every_op_close_to_torch(io_dtype: str | None) -> None:
    for case in ("conv", "layernorm", "rmsnorm", "hard_activations", "split_shuffle",
                 "convnext_parts", "upsample", "mul"):
        graph = netspec.loads(spec(*OP_CASES[case]))
        weights = trained(graph)
        for opset in (11, 17):
            model, _ = export_onnx(graph, weights, opset=opset, precision="fp16",
                                   io_dtype=io_dtype, verify=False)
            x = np.random.default_rng(0).standard_normal((2, *graph.input_shape))
            feed = x.astype(np.float16 if io_dtype else np.float32)
            outs = session(model).run(None, {"input": feed})
            refs = torch_eval(graph, weights, feed.astype(np.float32))
            for ours, ref in zip(outs, refs, strict=True):
                assert ours.dtype == (np.float16 if io_dtype else np.float32)
                assert rel_diff(ours, ref) < 1e-2, (case, opset)


def test_run_feeds_fp32_data_to_an_fp16_model(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    s = str(ROOT / "specs" / "digits_cnn.yaml")
    out = tmp_path / "h.onnx"
    assert main(["export", s, "-o", str(out), "--precision", "fp16", "--io-dtype", "fp16"]) == 0
    assert "precision fp16 (inputs and outputs fp16)" in capsys.readouterr().out
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32))
    y = tmp_path / "y.npy"
    assert main(["run", str(out), "--input", str(x), "--output", str(y)]) == 0
    assert np.load(y).dtype == np.float16 and np.load(y).shape == (3, 10)


# ------------------------------------------------------------------ several outputs
TWO_OUTPUTS = """netspec: 1
name: two
input: [3, 8, 8]
task: features
outputs: [feat, logits]
layers:
  - conv: {out: 4, k: 3, as: feat}
  - norm: batch
  - relu
  - global_avgpool
  - flatten
  - linear: {out: 5, as: logits}
"""


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_several_outputs_in_every_precision(tmp_path: Path, precision: str) -> None:
    path = tmp_path / "two.yaml"
    path.write_text(TWO_OUTPUTS)
    graph = netspec.load(path)
    w = tmp_path / "w.safetensors"
    weights = trained(graph)
    save_weights(w, weights, spec_metadata(graph))
    out = tmp_path / "two.onnx"
    extra = ["--calibration-data", "random"] if precision == "int8" else []
    assert main(["export", str(path), "--weights", str(w), "-o", str(out), "--precision",
                 precision, *extra]) == 0
    s = session(out)
    assert [o.name for o in s.get_outputs()] == ["feat", "logits"]
    # random calibration draws N(0, 1) samples from seed 0, these the first two of them:
    # inside the calibrated ranges, so nothing saturates
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    refs = torch_eval(graph, weights, x)
    outs = s.run(None, {"input": x})
    if precision != "int8":
        for ours, ref in zip(outs, refs, strict=True):
            assert rel_diff(ours, ref) < {"fp32": 1e-4, "fp16": 1e-2}[precision]
        return
    # int8: no fixed tolerance (how far it lands depended on the CPU: 0.18 of the range
    # where VPMADDUBSW saturated, 0.01 here), but the bound the file's own scales give
    bounds = int8_bounds(onnx.load(str(out)), x)
    for name, ours, ref in zip(["feat", "logits"], outs, refs, strict=True):
        c, r = bounds[name]
        slack = 1e-5 * (1 + np.abs(c))  # float rounding
        assert np.all(np.abs(ref - c) <= r + slack), name  # the bound holds for fp32 …
        assert np.all(np.abs(ours - c) <= r + slack), name  # … and int8 keeps to it
        assert r.max() < 0.5 * np.abs(ref).max(), name  # narrower than what it bounds


def int8_bounds(model: onnx.ModelProto, x: np.ndarray) -> dict[str, tuple[Any, Any]]:
    """Each output of a QDQ model as centre ± radius (float64 arrays), by interval
    arithmetic on the model itself, holding both for the fp32 model it came from and
    for any execution that keeps onnxruntime's quantizer's promise: every quantized
    weight within half its step of the float one (round to nearest), every activation
    within one step of its value (half for rounding, half for the integer kernels'
    requantization), clipped to its range as QuantizeLinear clips."""
    from onnx import numpy_helper
    from torch.nn import functional as F

    t = torch.from_numpy
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    env: dict[str, tuple[Any, Any]] = {"input": (t(x.astype(np.float64)), t(np.zeros(x.shape)))}
    quantized: dict[str, tuple[Any, Any, float, float, float]] = {}

    def per_axis(v: np.ndarray, node: onnx.NodeProto, ndim: int) -> Any:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * ndim
        if v.ndim:
            shape[axis] = -1
        return t(v.astype(np.float64).reshape(shape))

    for node in model.graph.node:
        op, ins = node.op_type, list(node.input)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if op == "QuantizeLinear":
            (c, r), s, z = env[ins[0]], float(consts[ins[1]]), float(consts[ins[2]])
            info = np.iinfo(consts[ins[2]].dtype)
            quantized[node.output[0]] = (c, r, s, s * (info.min - z), s * (info.max - z))
            continue
        if op == "DequantizeLinear" and ins[0] in quantized:
            c, r, s, low, high = quantized[ins[0]]
            lo, hi = (c - r - s).clamp(low, high), (c + r + s).clamp(low, high)
        elif op == "DequantizeLinear":
            q = consts[ins[0]]
            s_, z_ = per_axis(consts[ins[1]], node, q.ndim), per_axis(consts[ins[2]], node, q.ndim)
            env[node.output[0]] = ((t(q.astype(np.float64)) - z_) * s_, (s_ / 2).expand(q.shape))
            continue
        elif op in ("Conv", "Gemm"):
            (xc, xr), (wc, wr) = env[ins[0]], env[ins[1]]
            bc, br = env[ins[2]] if len(ins) > 2 else (0, 0)
            if op == "Conv":
                kw = {"stride": attrs.get("strides", [1, 1]), "groups": attrs.get("group", 1),
                      "padding": attrs.get("pads", [0, 0, 0, 0])[:2],
                      "dilation": attrs.get("dilations", [1, 1])}
                lin = functools.partial(F.conv2d, **kw)
                bc, br = (b.reshape(-1, 1, 1) if torch.is_tensor(b) else b for b in (bc, br))
            else:
                assert attrs.get("transB") == 1 and not attrs.get("transA")
                lin = functools.partial(F.linear)
            env[node.output[0]] = (lin(xc, wc) + bc,
                                   lin(xr, wc.abs()) + lin(xc.abs() + xr, wr) + br)
            continue
        elif op in ("Mul", "Add"):
            (ac, ar), (bc, br) = env[ins[0]], env[ins[1]]
            env[node.output[0]] = ((ac * bc, ac.abs() * br + ar * bc.abs() + ar * br)
                                   if op == "Mul" else (ac + bc, ar + br))
            continue
        elif op in ("Relu", "GlobalAveragePool", "Flatten"):
            c, r = env[ins[0]]
            lo, hi = c - r, c + r
            if op == "Relu":
                lo, hi = lo.clamp(min=0), hi.clamp(min=0)
            elif op == "GlobalAveragePool":  # a mean: monotone in each input
                lo, hi = lo.mean((2, 3), keepdim=True), hi.mean((2, 3), keepdim=True)
            else:
                lo, hi = lo.flatten(attrs.get("axis", 1)), hi.flatten(attrs.get("axis", 1))
        else:
            raise AssertionError(f"int8_bounds has no rule for {op}")
        env[node.output[0]] = ((lo + hi) / 2, (hi - lo) / 2)
    return {o.name: tuple(v.numpy() for v in env[o.name]) for o in model.graph.output}


# ------------------------------------------------------------------ int8
@pytest.fixture(scope="module")
def digits_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ckpt = tmp_path_factory.mktemp("digits") / "d.safetensors"
    assert main(["train", str(ROOT / "specs" / "digits_cnn.yaml"), "--data", "digits",
                 "--epochs", "4", "-o", str(ckpt)]) == 0
    return ckpt


def _predict(path: Path, x: np.ndarray) -> np.ndarray:
    return session(path).run(None, {"input": x})[0].argmax(axis=1)


def test_digits_int8_keeps_accuracy_and_agrees(tmp_path: Path, digits_ckpt: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from netspec.train.data import load_data

    s = str(ROOT / "specs" / "digits_cnn.yaml")
    fp32, int8 = tmp_path / "f.onnx", tmp_path / "q.onnx"
    assert main(["export", s, "--weights", str(digits_ckpt), "-o", str(fp32)]) == 0
    capsys.readouterr()
    assert main(["export", s, "--weights", str(digits_ckpt), "-o", str(int8), "--precision",
                 "int8", "--calibration-data", "digits", "--format", "json"]) == 0
    reported = json.loads(capsys.readouterr().out)["int8"]
    # the test's own figures: the written files on every digit and on the held-out split
    graph = netspec.load(s)
    data = load_data(graph, "digits", val_fraction=0.2, seed=0)
    x = np.concatenate([data.train.x, data.heldout.x])
    assert len(x) == 1797
    agreement = float(np.mean(_predict(fp32, x) == _predict(int8, x)))
    held = data.heldout
    acc32 = float(np.mean(_predict(fp32, held.x) == held.y))
    acc8 = float(np.mean(_predict(int8, held.x) == held.y))
    assert agreement >= 0.98 and 100 * (acc32 - acc8) <= 1.0
    model = onnx.load(int8)
    assert "QuantizeLinear" in ops_of(model) and int8.stat().st_size < fp32.stat().st_size / 3
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["netspec.precision"] == "int8" and meta["netspec.opset"] == "17"
    assert json.loads(meta["netspec.calibration"])["source"] == "digits"
    recorded = json.loads(meta["netspec.agreement"])
    assert reported["top1_agreement"] == pytest.approx(agreement)
    assert reported["compared"] == 1797 and reported["heldout"] == len(held.y)
    assert recorded["top1_agreement"] == pytest.approx(agreement)
    assert recorded["int8_accuracy"] == pytest.approx(acc8)
    assert recorded["fp32_accuracy"] == pytest.approx(acc32)
    # per-channel weights: one scale per output channel of the first conv
    scales = [onnx.numpy_helper.to_array(i) for i in model.graph.initializer
              if i.name.startswith("conv_bn1.conv1.weight") and i.name.endswith("_scale")]
    assert scales and scales[0].shape == (32,)


def test_int8_refused_when_accuracy_drops(tmp_path: Path, digits_ckpt: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A calibration set with a few huge samples stretches MinMax's ranges until the
    ordinary digits fall into a handful of levels: accuracy falls, nothing is written."""
    from netspec.train.data import load_digits_arrays

    x, y = load_digits_arrays(netspec.load(ROOT / "specs" / "digits_cnn.yaml"))
    x = x.copy()
    x[::10] *= 400.0
    npz = tmp_path / "outliers.npz"
    np.savez(npz, x=x, y=y)
    err = _refused(capsys, ["export", str(ROOT / "specs" / "digits_cnn.yaml"), "--weights",
                            str(digits_ckpt), "-o", str(tmp_path / "q.onnx"), "--precision",
                            "int8", "--calibration-data", str(npz), "--calibration-method",
                            "minmax"], tmp_path, status=1)
    assert "--max-drop 1" in err and "nothing written" in err


def test_int8_auto_tries_percentile_and_entropy_and_keeps_the_best(
        tmp_path: Path, digits_ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Where MinMax loses accuracy, auto calibrates again with Percentile and Entropy and
    writes the most accurate; the file written is the one whose accuracy is reported."""
    from netspec.train.data import load_data, load_digits_arrays

    graph = netspec.load(ROOT / "specs" / "digits_cnn.yaml")
    x, y = load_digits_arrays(graph)
    x = x.copy()
    x[::50] *= 30.0  # a few bright samples stretch the ranges
    npz = tmp_path / "bright.npz"
    np.savez(npz, x=x, y=y)
    out = tmp_path / "q.onnx"
    assert main(["export", str(ROOT / "specs" / "digits_cnn.yaml"), "--weights",
                 str(digits_ckpt), "-o", str(out), "--precision", "int8", "--calibration-data",
                 str(npz), "--max-drop", "99", "--format", "json"]) == 0
    q = json.loads(capsys.readouterr().out)["int8"]
    tried = {t["method"]: t["int8_accuracy"] for t in q["tried"]}
    if tried["minmax"] < q["fp32_accuracy"] or len(tried) > 1:
        assert list(tried) == ["minmax", "percentile", "entropy"][:len(tried)]
    assert q["int8_accuracy"] == max(tried.values()) == tried[q["method"]]
    held = load_data(graph, str(npz), val_fraction=0.2, seed=0).heldout
    assert float(np.mean(_predict(out, held.x) == held.y)) == pytest.approx(q["int8_accuracy"])


def test_int8_random_calibration_warns_and_reports_float_layers(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = netspec.loads(spec("- conv: {out: 4, k: 3}\n- hardswish\n- conv: {out: 4, k: 1}\n"
                           "- global_avgpool\n- flatten\n- linear: {out: 3}", "[3, 8, 8]"))
    path = tmp_path / "s.yaml"
    path.write_text(s.spec_text)
    out = tmp_path / "q.onnx"
    assert main(["export", str(path), "-o", str(out), "--precision", "int8",
                 "--calibration-data", "random", "--report"]) == 0
    captured = capsys.readouterr()
    assert "random" in captured.err and "speed" in captured.err
    assert "no labels: accuracy not judged" in captured.out
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    floats = json.loads(meta["netspec.float_layers"])
    # onnxruntime has no int8 HardSwish: that layer computes in float, and says so
    (hs,) = [n.name for n in s.layers if n.op == "hardswish"]
    assert hs in floats and "float" in floats[hs]
    assert f"{hs}:" in captured.out
