"""ONNX export: every op and every bundled spec computes in onnxruntime what the torch
module computes in eval mode, with BatchNorm folded and dropout gone.

Weights look trained: BN running statistics, γ and δ are random and far from their
initial 0/1, so a fold that forgot a term (ε, the mean, δ) shows. The comparison here
is the test's own (session + module built here), not export's ``verify``.
"""

from __future__ import annotations

import collections
import gc
import json
import re
import subprocess
import sys
import textwrap
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import netspec
from netspec.backends.onnx import EMITTERS, VerificationError, export_onnx, plan_folds
from netspec.backends.onnx.export import export_onnx_file
from netspec.backends.onnx.fold import bn_affine, fold_after, fold_before
from netspec.backends.onnx.runner import OnnxRunner
from netspec.cli import main
from netspec.kinds import FAMILIES, OPS, REGISTRY, LayerArgs, Shape
from netspec.kinds.base import PosInt
from netspec.weights import load_weights, save_weights, spec_metadata

torch = pytest.importorskip("torch")
F = torch.nn.functional

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
GONE = {"BatchNormalization", "Dropout", "Identity"}


# ----------------------------------------------------------------------------- helpers
def spec(layers: str, input: str = "[4, 9, 9]", name: str = "t") -> str:
    body = textwrap.indent(textwrap.dedent(layers).strip(), "  ")
    return f"netspec: 1\nname: {name}\ninput: {input}\nlayers:\n{body}\n"


def trained(graph: netspec.Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """torch's initialisation for ``seed``, with norm γ/δ and BN statistics made to look
    trained: far from 1/0, different per channel."""
    torch.manual_seed(seed)
    state = netspec.build(graph).state_dict()
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    owner = graph.tensor_owners()
    for k, v in state.items():
        a = v.numpy().copy()
        node = owner.get(k, k.rpartition(".")[0])  # BN's step counter is no spec tensor
        if k.endswith("running_mean"):
            a = rng.normal(0, 0.5, a.shape)
        elif k.endswith("running_var"):
            a = rng.uniform(0.3, 2.5, a.shape)
        elif k.endswith(".weight") and graph[node].args.is_norm:
            a = rng.uniform(0.5, 1.5, a.shape) * rng.choice([-1, 1], a.shape)
        elif k.endswith(".bias") and graph[node].args.is_norm:
            a = rng.normal(0, 0.5, a.shape)
        elif graph[node].op in ("layer_scale", "prelu"):
            a = rng.uniform(0.2, 1.5, a.shape)  # far from the 1e-6 / 0.25 they start at
        out[k] = a.astype(v.numpy().dtype)
    return out


def torch_eval(graph: netspec.Graph, weights: dict[str, np.ndarray], x: np.ndarray
               ) -> list[np.ndarray]:
    """Every output of the torch module in eval mode, in the spec's order."""
    # built without memory, then given the weights: no time spent initialising
    module = netspec.build(graph, device="meta")
    module.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, assign=True)
    module.eval()
    with torch.inference_mode():
        out = module(torch.from_numpy(x))
    return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


def max_diff(model: onnx.ModelProto | bytes, graph: netspec.Graph,
             weights: dict[str, np.ndarray], batches: tuple[int, ...] = (1, 3)) -> float:
    """max |onnxruntime − torch eval| over random inputs, relative to the output's scale
    where that is above 1."""
    data = model if isinstance(model, bytes) else model.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    worst = 0.0
    for n in batches:
        x = rng.standard_normal((n, *graph.input_shape)).astype(np.float32)
        outs = session.run(None, {"input": x})
        assert [o.name for o in session.get_outputs()] == list(graph.output_names)
        refs = torch_eval(graph, weights, x)
        assert len(outs) == len(refs) == len(graph.outputs)
        for ours, ref, shape in zip(outs, refs, graph.output_shapes, strict=True):
            assert ours.shape == ref.shape == (n, *shape)
            assert np.isfinite(ours).all()
            worst = max(worst,
                        float(np.abs(ours - ref).max()) / max(1.0, float(np.abs(ref).max())))
    return worst


def op_types(model: onnx.ModelProto) -> collections.Counter[str]:
    return collections.Counter(n.op_type for n in model.graph.node)


def initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    (t,) = [t for t in model.graph.initializer if t.name == name]
    return onnx.numpy_helper.to_array(t)


def export(text: str, opset: int = 17, **kw: Any
           ) -> tuple[onnx.ModelProto, Any, netspec.Graph, dict[str, np.ndarray]]:
    graph = netspec.loads(text)
    weights = trained(graph)
    model, report = export_onnx(graph, weights, opset=opset, verify=False, **kw)
    return model, report, graph, weights


def folds(report: Any) -> dict[str, tuple[str, str | None]]:
    return {e.layer: (e.action, e.into) for e in report.folds}


# ------------------------------------------------------------------ every op, ORT == torch
OP_CASES: dict[str, tuple[str, str]] = {
    # name: (layers, input)
    "conv": ("- conv: {out: 6, k: 3, stride: 2, groups: 2}\n"
             "- conv: {out: 5, k: [3, 1], pad: [0, 2], dilation: 2, bias: false}", "[4, 9, 9]"),
    "conv_transpose": ("- conv_transpose: {out: 6, k: 3, stride: 2, pad: 1, output_pad: 1, "
                       "groups: 2}\n- conv_transpose: {out: 3, k: 2, dilation: 2, bias: false}",
                       "[4, 5, 5]"),
    "linear": ("- flatten\n- linear: {out: 7}\n- linear: {out: 3, bias: false}", "[2, 3, 3]"),
    "batchnorm": ("- norm: batch\n- relu\n- flatten\n- norm: {kind: batch, affine: false}",
                  "[4, 3, 3]"),
    "layernorm": ("- norm: layer\n- norm: {kind: layer, affine: element}\n"
                  "- norm: {kind: layer, affine: none, eps: 0.01}\n- flatten\n- norm: layer\n"
                  "- norm: {kind: layer, affine: none}", "[4, 5, 5]"),
    "instancenorm": ("- norm: instance\n- norm: {kind: instance, affine: false}", "[4, 5, 5]"),
    "groupnorm": ("- norm: {kind: group, groups: 2}\n"
                  "- norm: {kind: group, groups: 4, affine: false, eps: 0.001}", "[4, 5, 5]"),
    "rmsnorm": ("- norm: rms\n- norm: {kind: rms, over: channels+space}\n"
                "- norm: {kind: rms, affine: false}\n- flatten\n- norm: rms", "[4, 5, 5]"),
    "dropout": ("- dropout: {drop: 0.3}\n- relu\n- dropout: {keep: 0.7, kind: channel, "
                "scaling: classic}\n- dropout: {keep: 0.6, scaling: classic}", "[4, 5, 5]"),
    "activations": ("- relu\n- leaky_relu: 0.2\n- relu6\n- gelu\n- gelu: tanh\n- silu\n"
                    "- sigmoid\n- tanh", "[4, 5, 5]"),
    "maxpool": ("- maxpool: {k: 2, pad: 1, ceil: true}\n"          # torch drops a window
                "- maxpool: {k: 3, stride: 2, pad: 1, ceil: true}\n"  # ceil keeps one
                "- maxpool: {k: 2, stride: 1, dilation: 2}", "[3, 11, 11]"),
    "avgpool": ("- avgpool: {k: 2, pad: 1, ceil: true}\n"
                "- avgpool: {k: 3, stride: 2, pad: 1, ceil: true, count_pad: false}\n"
                "- avgpool: {k: 3, stride: 2, pad: 1, ceil: true}\n- avgpool: {k: 2}",
                "[3, 19, 19]"),
    "adaptive_avgpool": ("- adaptive_avgpool: [3, 5]\n- adaptive_avgpool: 3\n"
                         "- adaptive_avgpool: 1", "[3, 8, 10]"),
    "global_avgpool": ("- global_avgpool\n- flatten\n- linear: {out: 3}", "[3, 5, 7]"),
    "flatten": ("- flatten\n- flatten\n- dropout: {drop: 0.1}", "[3, 2, 2]"),
    "names": ("- conv: {out: 3, k: 1, as: output}\n- relu\n- add: [output]", "[3, 4, 4]"),
    "upsample": ("- upsample: 2\n- upsample: {scale: 3, mode: bilinear}", "[2, 3, 4]"),
    "add": ("- conv: {out: 4, k: 1, as: a}\n- conv: {out: 4, k: 3, as: b}\n"
            "- add: [a]\n- conv: {out: 4, k: 3}\n- add: [a, b]", "[4, 6, 6]"),
    "concat": ("- conv: {out: 3, k: 1, as: a}\n- relu\n- concat: [a]\n- flatten\n"
               "- linear: {out: 5, as: f}\n- relu\n- concat: [f]", "[4, 6, 6]"),
    "rank1": ("- linear: {out: 8}\n- norm: batch\n- gelu\n- dropout: {drop: 0.5}\n- norm: layer\n"
              "- silu\n- linear: {out: 4}", "[12]"),
    "hard_activations": ("- hardswish\n- conv: {out: 4, k: 1}\n- hardsigmoid\n- mish\n"
                         "- elu\n- elu: 0.3\n- softmax", "[4, 5, 5]"),
    # β·x crosses the threshold (3) on the test's normal inputs: both sides are checked
    "softplus": ("- softplus\n- softplus: {beta: 2, threshold: 3}\n- flatten\n- softplus: 0.5",
                 "[3, 4, 4]"),
    "prelu": ("- prelu\n- prelu: {per_channel: true, init: 0.1}\n- flatten\n"
              "- prelu: {per_channel: true}\n- softmax", "[3, 4, 4]"),
    "mul": ("- conv: {out: 4, k: 1, as: a}\n- global_avgpool\n- sigmoid\n- mul: [a]\n"
            "- conv: {out: 4, k: 3, as: b}\n- mul: [a, b]\n- mul: [in]", "[4, 6, 6]"),
    "split_shuffle": ("- split: {parts: 2, as: x}\n- conv: {out: 4, k: 3}\n- relu: {as: b}\n"
                      "- concat: [x.0, b]\n- shuffle: 2\n- split: {sizes: [2, 6], as: y}\n"
                      "- concat: [y.1, y.0]", "[8, 5, 5]"),
    "layer_scale": ("- conv: {out: 4, k: 3}\n- layer_scale: 0.5\n- relu\n"
                    "- layer_scale: {init: 2.0}\n- conv: {out: 4, k: 1, as: a}\n- relu\n"
                    "- add: [a]\n- layer_scale\n- flatten\n- linear: {out: 3}\n- layer_scale",
                    "[4, 5, 5]"),
    "convnext_parts": ("- norm: {kind: layer, over: channels, eps: 1e-6}\n"
                       "- linear: {out: 8, over: channels}\n- gelu\n"
                       "- linear: {out: 4, over: channels}\n- layer_scale: 0.1\n"
                       "- drop_path: {drop: 0.3}\n- norm: {kind: layer, over: channels, "
                       "affine: none}", "[4, 5, 5]"),
    "dfl": ("- conv: {out: 8, k: 1}\n- dfl: 2\n- conv: {out: 4, k: 1}\n- dfl: 1", "[3, 4, 4]"),
    "parallel": ("- parallel:\n    branches:\n      - conv: {out: 2, k: 1}\n"
                 "      - [conv: {out: 3, k: 3}, relu]\n      - identity\n"
                 "- parallel: {combine: add, branches: [conv: {out: 9, k: 1}, identity]}",
                 "[4, 5, 5]"),
    # a ViT in small: patchify, class token, position table, pre-norm attention and MLP
    # on tokens, the class token out
    "vit_parts": ("- conv: {out: 8, k: 2, stride: 2, pad: 0}\n- tokens\n- class_token: {std: 0.5}\n"
                  "- pos_embed\n- norm: {kind: layer, eps: 1e-6}\n- attention: 2\n"
                  "- attention: {heads: 2, key_dim: 2, head_dim: 3, qkv_bias: false}\n"
                  "- layer_scale: 0.5\n- linear: {out: 12}\n- gelu: tanh\n"
                  "- dropout: {drop: 0.1}\n- linear: {out: 8, bias: false}\n"
                  "- layer_scale: {init: 0.3}\n- norm: {kind: layer, affine: none}\n"
                  "- select: 0", "[3, 6, 6]"),
    # attention over a map's positions; tokens back to a map; the mean token
    "attention_on_maps": ("- attention: {heads: 2, dim: 8, out_bias: false, as: a}\n"
                          "- tokens\n- linear: {out: 6}\n- map: [4, 5]\n"
                          "- layer_scale: {flat: true, init: 0.5}\n- conv: {out: 4, k: 1}\n"
                          "- layer_scale: {flat: true, init: 0.5}\n- relu\n"
                          "- add: [a]\n- tokens\n- select: mean", "[4, 4, 5]"),
    # YOLO11's C2PSA core: a 1×1 conv and BN make each head's q, k, v side by side;
    # attention without projections; then torch's layout on tokens
    "attention_without_projections": (
        "- conv: {out: 12, k: 1, bias: false}\n- norm: batch\n"
        "- attention: {heads: 2, key_dim: 1, project: false, layout: heads}\n"
        "- conv: {out: 12, k: 1}\n- tokens\n- attention: {heads: 2, project: false}",
        "[4, 3, 5]"),
    # Swin in small: patchify, windows shifted and padded (6×10 → 8×12), patch merging,
    # then windows of 2×2 shifted by 1 on the merged 3×5 (padded to 4×6)
    "swin_parts": ("- conv: {out: 8, k: 2, stride: 2, pad: 0}\n"
                   "- norm: {kind: layer, over: channels}\n"
                   "- window_attention: {heads: 2, window: 4, shift: 2, drop: 0.1}\n"
                   "- patch_merge\n- norm: {kind: layer, over: channels}\n"
                   "- linear: {out: 16, over: channels, bias: false}\n"
                   "- window_attention: {heads: 4, window: 2, shift: 1, qkv_bias: false}",
                   "[3, 12, 20]"),
}


def test_op_cases_use_every_op() -> None:
    used = {n.op for text, inp in OP_CASES.values() for n in netspec.loads(spec(text, inp))}
    assert used - {"input"} == set(OPS)


@pytest.mark.parametrize("opset", [17, 23])
@pytest.mark.parametrize("case", sorted(OP_CASES))
def test_op_matches_torch(case: str, opset: int) -> None:
    text, inp = OP_CASES[case]
    model, _, graph, weights = export(spec(text, inp), opset=opset)
    assert not set(op_types(model)) & GONE
    assert max_diff(model, graph, weights) < 1e-5


def test_newer_opsets_use_single_operators() -> None:
    text = "- norm: {kind: group, groups: 2}\n- gelu\n- norm: {kind: rms, over: channels+space}"
    old, *_ = export(spec(text, "[4, 5, 5]"), opset=17)
    new, *_ = export(spec(text, "[4, 5, 5]"), opset=23)
    assert not {"GroupNormalization", "Gelu", "RMSNormalization"} & set(op_types(old))
    assert {"GroupNormalization", "Gelu", "RMSNormalization"} <= set(op_types(new))
    assert old.ir_version <= 8 < new.ir_version  # opset 17 loads on older onnxruntime


def test_verify_reports_small_differences() -> None:
    graph = netspec.loads(spec(OP_CASES["conv"][0]))
    _, report = export_onnx(graph, trained(graph), tolerance=1e-4)
    v = report.verification
    assert v is not None and v.ok and v.batches == (1, 3)
    assert v.max_abs < 1e-5 and v.max_rel < 1e-5


# ----------------------------------------------------------------- every bundled spec
@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_bundled_spec_matches_torch(path: Path) -> None:
    graph = netspec.load(path)
    weights = trained(graph)
    file, report = export_onnx_file(graph, weights, verify=False)
    data = file.tobytes()
    model = onnx.ModelProto.FromString(data)
    assert not set(op_types(model)) & GONE
    # every BN, layer scale and training-only layer has its line in the fold report
    foldable = [n.name for n in graph.layers if n.args is not None and (
        n.args.running_stats or n.args.training_only or n.op == "layer_scale")]
    assert [e.layer for e in report.folds] == foldable
    big = graph.input_shape[-1] >= 100  # the 224×224 zoo: one batch keeps the file fast
    assert max_diff(data, graph, weights, (1,) if big else (1, 3)) < 1e-4


def test_resnet18_report_and_metadata() -> None:
    graph = netspec.load(ROOT / "specs" / "resnet18.yaml")
    weights = trained(graph)
    meta = {"netspec.bn_stats": "running averages, momentum 0.1"}
    model, report = export_onnx(graph, weights, verify=False, metadata=meta)
    n_bn = sum(n.op == "batchnorm" for n in graph)
    assert n_bn == 20 and len(report.folds) == 20
    for e in report.folds:  # every BN after a conv: folded into that conv
        assert e.action == "folded" and e.op == "batchnorm"
        assert e.into == graph[e.layer].inputs[0] and graph[e.into].op == "conv"
        assert "only consumer" in e.reason
    assert report.summary == "batchnorm: 20 (20 folded into conv)"
    props = {p.key: p.value for p in model.metadata_props}
    assert props["netspec.spec"] == graph.spec_text
    assert props["netspec.spec_sha256"] == graph.spec_sha256
    assert props["netspec.version"] == netspec.__version__
    assert json.loads(props["netspec.folds"]) == [e.to_dict() for e in report.folds]
    assert json.loads(props["netspec.params"])["params"] == graph.params().params == 11_689_512
    assert props["netspec.bn_stats"] == meta["netspec.bn_stats"]
    # names from the spec; input and output named so; the batch axis dynamic
    names = {n.name for n in model.graph.node}
    assert {"conv1", "layer1.0.conv1", "layer4.1.add1", "fc"} <= names
    assert "bn1" not in names
    assert model.graph.input[0].name == "input" and model.graph.output[0].name == "output"
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert {"conv1.weight", "conv1.bias", "fc.weight"} <= {t.name for t in model.graph.initializer}


# ------------------------------------------------------------------ the fold rules, case by case
def test_preactivation_block_bn_before_relu_is_scale_shift() -> None:
    model, report, graph, weights = export(spec("""
        - conv: {out: 6, k: 3, bias: false}
        - residual:
            body:
              - norm: batch
              - relu
              - conv: {out: 6, k: 3}
              - norm: batch
              - relu
              - conv: {out: 6, k: 3}
            shortcut: identity
        """))
    f = folds(report)
    assert f["bn1"] == ("scale_shift", None)  # conv1 also feeds the shortcut's add
    assert f["bn2"] == ("folded", "conv2")     # conv2 → bn2 (only consumer)
    reasons = {e.layer: e.reason for e in report.folds}
    assert "also feeds add1" in reasons["bn1"] and "relu" in reasons["bn1"]
    assert op_types(model)["Mul"] == 1
    assert max_diff(model, graph, weights) < 1e-5


def test_bn_after_add_is_scale_shift() -> None:
    model, report, graph, weights = export(spec("""
        - conv: {out: 4, k: 3}
        - residual: {body: [conv: {out: 4, k: 3}], shortcut: identity}
        - norm: batch
        - relu
        """))
    (e,) = report.folds
    assert (e.action, e.into) == ("scale_shift", None)
    assert "add" in e.reason
    s, t = bn_affine(weights["bn1.running_mean"], weights["bn1.running_var"], 1e-5,
                     weights["bn1.weight"], weights["bn1.bias"])
    np.testing.assert_allclose(initializer(model, "bn1.scale").ravel(), s, rtol=1e-6)
    np.testing.assert_allclose(initializer(model, "bn1.shift").ravel(), t, rtol=1e-6,
                               atol=1e-7)
    assert initializer(model, "bn1.scale").shape == (4, 1, 1)
    assert max_diff(model, graph, weights) < 1e-5


@pytest.mark.parametrize("conv", ["{out: 8, k: 1}", "{out: 8, k: 1, stride: 2, bias: false}",
                                  "{out: 6, k: 3, pad: 0, groups: 2}",
                                  "{out: 8, k: 3, pad: 0, groups: 4}"])
def test_bn_into_following_unpadded_conv(conv: str) -> None:
    model, report, graph, weights = export(spec(f"""
        - relu
        - norm: batch
        - conv: {conv}
        """))
    assert folds(report) == {"bn1": ("folded", "conv1")}
    assert "no padding" in report.folds[0].reason
    assert op_types(model) == {"Relu": 1, "Conv": 1}
    assert max_diff(model, graph, weights) < 1e-5


def test_bn_before_padded_conv_is_not_folded() -> None:
    model, report, graph, weights = export(spec("- relu\n- norm: batch\n- conv: {out: 4, k: 3}"))
    (e,) = report.folds
    assert e.action == "scale_shift" and "padding [1, 1]" in e.reason
    assert max_diff(model, graph, weights) < 1e-5


def test_depthwise_conv_then_bn_and_bn_then_depthwise() -> None:
    model, report, graph, weights = export(spec("""
        - conv: {out: 8, k: 3, groups: 4, bias: false}
        - norm: batch
        - relu6
        - norm: batch
        - conv: {out: 8, k: 3, pad: 0, groups: 8}
        - norm: batch
        """))
    assert folds(report) == {"bn1": ("folded", "conv1"), "bn2": ("folded", "conv2"),
                             "bn3": ("folded", "conv2")}
    assert op_types(model) == {"Conv": 2, "Clip": 1}
    assert max_diff(model, graph, weights) < 1e-5


@pytest.mark.parametrize("text", [
    "- relu\n- flatten\n- norm: batch\n- linear: {out: 5, bias: false}",  # BN1d → linear
    "- relu\n- norm: batch\n- flatten\n- linear: {out: 5}",  # BN2d → flatten → linear
])
def test_bn_into_following_linear(text: str) -> None:
    model, report, graph, weights = export(spec(text, "[3, 2, 2]"))
    assert folds(report) == {"bn1": ("folded", "fc1")}
    assert "Mul" not in op_types(model)
    assert max_diff(model, graph, weights) < 1e-5


def test_linear_then_bn_and_conv_transpose_folds() -> None:
    model, report, graph, weights = export(spec("""
        - conv_transpose: {out: 6, k: 2, stride: 2, groups: 3, bias: false}
        - norm: batch
        - relu
        - norm: batch
        - conv_transpose: {out: 4, k: 1, groups: 2}
        - flatten
        - linear: {out: 6}
        - norm: batch
        """, "[3, 3, 3]"))
    assert folds(report) == {"bn1": ("folded", "up1"), "bn2": ("folded", "up2"),
                             "bn3": ("folded", "fc1")}
    assert max_diff(model, graph, weights) < 1e-5


def test_bn_with_several_consumers_is_scale_shift() -> None:
    model, report, graph, weights = export(spec("""
        - relu
        - norm: {kind: batch, affine: false, as: n}
        - conv: {out: 4, k: 1}
        - add: [n]
        """))
    (e,) = report.folds
    assert e.action == "scale_shift" and "feeds 2 layers" in e.reason
    assert max_diff(model, graph, weights) < 1e-5


def test_classic_dropout_folds_keep_into_next_linear_weight() -> None:
    model, report, graph, weights = export(spec("""
        - linear: {out: 16}
        - relu
        - dropout: {keep: 0.5, scaling: classic}
        - linear: {out: 4}
        """, "[10]"))
    assert folds(report) == {"drop1": ("folded", "fc2")}
    assert "not bias" in report.folds[0].reason
    np.testing.assert_allclose(initializer(model, "fc2.weight"), weights["fc2.weight"] * 0.5)
    np.testing.assert_array_equal(initializer(model, "fc2.bias"), weights["fc2.bias"])
    assert op_types(model) == {"Gemm": 2, "Relu": 1}
    assert max_diff(model, graph, weights) < 1e-5


def test_classic_dropout_before_relu_is_one_mul_inverted_is_nothing() -> None:
    model, report, graph, weights = export(spec("""
        - conv: {out: 4, k: 3}
        - dropout: {drop: 0.2, scaling: classic}
        - relu
        - dropout: {drop: 0.5}
        - conv: {out: 4, k: 3}
        """))
    assert folds(report) == {"drop1": ("mul", None), "drop2": ("removed", None)}
    assert op_types(model) == {"Conv": 2, "Mul": 1, "Relu": 1}
    assert initializer(model, "drop1/keep") == np.float32(0.8)
    assert max_diff(model, graph, weights) < 1e-5


def test_bn_behind_a_removed_dropout_still_folds() -> None:
    model, report, graph, weights = export(spec("""
        - conv: {out: 4, k: 3}
        - dropout: {drop: 0.2}
        - norm: batch
        - relu
        """))
    assert folds(report) == {"drop1": ("removed", None), "bn1": ("folded", "conv1")}
    assert max_diff(model, graph, weights) < 1e-5


# ------------------------------------------------------------------ fold arithmetic
@settings(max_examples=25, deadline=None)
@given(st.data())
def test_fold_formulas_match_conv_bn(data: st.DataObject) -> None:
    """fold_after / fold_before against torch's conv and BN, on random configs."""
    g = data.draw(st.integers(1, 3), "groups")
    c_in, c_out = g * data.draw(st.integers(1, 3)), g * data.draw(st.integers(1, 3))
    k = data.draw(st.integers(1, 3))
    stride = data.draw(st.integers(1, 2))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = torch.from_numpy(rng.standard_normal((2, c_in, 6, 6)))
    w = rng.standard_normal((c_out, c_in // g, k, k))
    b = rng.standard_normal(c_out) if data.draw(st.booleans()) else None
    tb = None if b is None else torch.from_numpy(b)

    def bn(c: int) -> tuple[np.ndarray, ...]:
        return (rng.normal(0, 1, c), rng.uniform(0.2, 3, c), rng.normal(1, 0.5, c),
                rng.normal(0, 1, c))

    def torch_bn(h: Any, p: tuple[np.ndarray, ...]) -> Any:
        return F.batch_norm(h, *(torch.from_numpy(a) for a in (p[0], p[1], p[2], p[3])),
                            training=False, eps=1e-3)

    def conv(h: Any, w_: np.ndarray, b_: Any, pad: int) -> Any:
        return F.conv2d(h, torch.from_numpy(w_), b_ if b_ is None or torch.is_tensor(b_)
                        else torch.from_numpy(b_), stride=stride, padding=pad, groups=g)

    after = bn(c_out)
    s, t = bn_affine(after[0], after[1], 1e-3, after[2], after[3])
    w2, b2 = fold_after(w, b, s, t, g)
    ref = torch_bn(conv(x, w, tb, k // 2), after)
    np.testing.assert_allclose(conv(x, w2, b2, k // 2).numpy(), ref.numpy(), atol=1e-9)

    before = bn(c_in)
    s, t = bn_affine(before[0], before[1], 1e-3, before[2], before[3])
    w3, b3 = fold_before(w, b, s, t, g)
    ref = conv(torch_bn(x, before), w, tb, 0)
    np.testing.assert_allclose(conv(x, w3, b3, 0).numpy(), ref.numpy(), atol=1e-9)


def test_fold_formulas_linear() -> None:
    rng = np.random.default_rng(0)
    w, b, x = rng.standard_normal((3, 5)), rng.standard_normal(3), rng.standard_normal((4, 5))
    s, t = rng.uniform(0.5, 2, 5), rng.standard_normal(5)
    w2, b2 = fold_before(w, b, s, t)
    np.testing.assert_allclose(x @ w2.T + b2, (x * s + t) @ w.T + b)
    s, t = rng.uniform(0.5, 2, 3), rng.standard_normal(3)
    w3, b3 = fold_after(w, None, s, t)
    np.testing.assert_allclose(x @ w3.T + b3, (x @ w.T) * s + t)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(g=st.sampled_from([1, 2, 4]), k=st.sampled_from([1, 3]), stride=st.integers(1, 2),
       pad=st.sampled_from(["", ", pad: 0"]), before=st.booleans(), bias=st.booleans(),
       seed=st.integers(0, 1000))
def test_random_bn_conv_folds_in_onnxruntime(g: int, k: int, stride: int, pad: str,
                                             before: bool, bias: bool, seed: int) -> None:
    conv = f"- conv: {{out: {2 * g}, k: {k}, stride: {stride}, groups: {g}, " \
           f"bias: {str(bias).lower()}{pad}}}"
    layers = f"- relu\n- norm: batch\n{conv}" if before else f"{conv}\n- norm: batch\n- relu"
    graph = netspec.loads(spec(layers, "[4, 7, 7]"))
    weights = trained(graph, seed)
    model, report = export_onnx(graph, weights, verify=False)
    (e,) = report.folds
    padded = k == 3 and not pad
    assert e.action == ("scale_shift" if before and padded else "folded")
    assert max_diff(model, graph, weights) < 1e-5


def test_plan_never_modifies_the_weights() -> None:
    graph = netspec.loads(spec("- conv: {out: 4, k: 3}\n- norm: batch\n- dropout: "
                               "{keep: 0.5, scaling: classic}\n- conv: {out: 4, k: 1}"))
    weights = trained(graph)
    before = {k: v.copy() for k, v in weights.items()}
    plan = plan_folds(graph, weights)
    assert all(np.array_equal(weights[k], before[k]) for k in weights)
    assert set(plan.tensors) == {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"}


# ------------------------------------------------------------------ a kind fold.py never heard of
def _dense_t_kind() -> type[LayerArgs]:
    class DenseT(LayerArgs):
        """y = x·W + b with W stored [in, out], as Keras and JAX keep it: a linear map whose
        output channels lie on axis 1 of its weight."""

        op = "test_dense_t"
        auto_name = "dt"
        ranks = (1,)
        linear_map = True
        weight_out_axis = 1

        out: PosInt

        def out_shape(self, inputs: Sequence[Shape]) -> Shape:
            self.check_input(inputs)
            return (self.out,)

        def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
            return {"weight": (inputs[0][0], self.out), "bias": (self.out,)}

    return DenseT


def _emit_dense_t(b: Any, node: Any) -> None:
    h = b.op("MatMul", [*b.inputs(node), b.param(node, "weight")], f"{node.name}/matmul",
             f"{node.name}/matmul")
    b.op("Add", [h, b.param(node, "bias")], b.out(node), node.name)


def _dense_t_folds(op: str) -> None:
    graph = netspec.loads(spec(f"""
        - relu
        - norm: batch
        - flatten
        - {op}: {{out: 6}}
        - norm: batch
        - relu
        """, "[2, 2, 2]"))
    rng = np.random.default_rng(0)
    w = {k: rng.uniform(0.5, 1.5, shape).astype(np.float32)
         for k, shape in {**graph.param_shapes(), **graph.buffer_shapes()}.items()
         if not k.endswith("num_batches_tracked")}
    file, report = export_onnx_file(graph, w, verify=False)  # torch has no such module
    assert folds(report) == {"bn1": ("folded", "dt1"), "bn2": ("folded", "dt1")}
    model = file.model()
    assert [n.op_type for n in model.graph.node] == ["Relu", "Flatten", "MatMul", "Add", "Relu"]

    def bn(h: np.ndarray, name: str, shape: tuple[int, ...]) -> np.ndarray:
        m, v, g, d = (w[f"{name}.{k}"].reshape(shape)
                      for k in ("running_mean", "running_var", "weight", "bias"))
        return (h - m) / np.sqrt(v + graph[name].args.eps) * g + d  # type: ignore[union-attr]

    x = rng.standard_normal((3, 2, 2, 2)).astype(np.float32)
    h = bn(np.maximum(x, 0), "bn1", (2, 1, 1)).reshape(3, 8)
    ref = np.maximum(bn(h @ w["dt1.weight"] + w["dt1.bias"], "bn2", (6,)), 0)
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": x})[0], ref, rtol=1e-5, atol=1e-5)


def test_a_new_linear_map_folds_by_its_traits_alone() -> None:
    """A kind defined here, not in netspec/kinds, with weight [in, out]: BNs before it
    (through a flatten) and after it fold into it, though fold.py names no kind. It gets
    a spec name and an emitter for the test's length, and leaves no trace after."""
    cls = _dense_t_kind()  # defining it registered it
    gone = weakref.ref(cls)
    FAMILIES[cls.op] = {None: cls}
    EMITTERS[cls.op] = _emit_dense_t
    try:
        _dense_t_folds(cls.op)
    finally:
        for table in (REGISTRY, FAMILIES, EMITTERS):
            table.pop(cls.op, None)  # type: ignore[attr-defined]
        del cls
        # a Document's memo (netspec/memo.py) keeps the models it validated until a
        # finalizer drops it, which runs inside a collection: the class it held is free
        # for the next one
        for _ in range(10):
            if not gc.collect():
                break
    # a LayerArgs subclass with an op still alive would fail the registry's tests
    assert gone() is None


# ------------------------------------------------------------------ weights file, no torch
def _weights_file(tmp_path: Path, name: str = "resnet18") -> tuple[Path, Path]:
    spec_path = ROOT / "specs" / f"{name}.yaml"
    graph = netspec.load(spec_path)
    w = tmp_path / "w.safetensors"
    save_weights(w, trained(graph), {**spec_metadata(graph), "netspec.bn_stats": "test"})
    return spec_path, w


def test_export_from_safetensors_never_imports_torch(tmp_path: Path) -> None:
    spec_path, w = _weights_file(tmp_path, "digits_cnn")
    out = tmp_path / "api.onnx"
    code = textwrap.dedent(f"""
        import sys
        import netspec
        from netspec.backends.onnx import export_onnx
        from netspec.weights import load_weights
        graph = netspec.load({str(spec_path)!r})
        weights, meta = load_weights({str(w)!r})
        model, report = export_onnx(graph, weights, verify=False, metadata=meta)
        open({str(out)!r}, "wb").write(model.SerializeToString())
        from netspec.cli import main
        rc = main(["export", {str(spec_path)!r}, "--weights", {str(w)!r}, "--no-verify",
                   "-o", {str(tmp_path / "cli.onnx")!r}])
        assert rc == 0, rc
        assert "torch" not in sys.modules, sorted(m for m in sys.modules if "torch" in m)
    """)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    assert (tmp_path / "cli.onnx").read_bytes() == out.read_bytes()
    props = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert props["netspec.bn_stats"] == "test"


# ------------------------------------------------------------------ CLI
def test_cli_export_no_verify_from_weights(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    spec_path, w = _weights_file(tmp_path)
    out = tmp_path / "m.onnx"
    assert main(["export", str(spec_path), "--weights", str(w), "-o", str(out),
                 "--no-verify", "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["verification"] is None and result["opset"] == 17
    assert len(result["folds"]) == 20
    assert set(result["folds"][0]) >= {"layer", "action", "into", "reason"}
    weights, _ = load_weights(w)
    model = onnx.load(out)
    assert max_diff(model, netspec.load(spec_path), weights, (1,)) < 1e-4


def test_cli_export_verifies_and_reports(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.onnx"
    text = spec("- conv: {out: 4, k: 3}\n- norm: batch\n- relu\n- dropout: {drop: 0.1}\n"
                "- global_avgpool\n- flatten\n- linear: {out: 3}")
    (tmp_path / "s.yaml").write_text(text)
    assert main(["export", str(tmp_path / "s.yaml"), "-o", str(out), "--report",
                 "--opset", "21"]) == 0
    printed = capsys.readouterr().out
    assert "batchnorm: 1 (1 folded into conv); dropout: 1 (1 removed)" in printed
    assert re.search(r"bn1 +folded into conv1: conv → BN", printed)
    assert re.search(r"drop1 +removed: inverted dropout", printed)
    assert "max abs diff" in printed and "max rel diff" in printed
    assert onnx.load(out).opset_import[0].version == 21


def test_cli_export_refuses_to_replace_without_force(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    spec_path, w = _weights_file(tmp_path, "digits_cnn")
    out = tmp_path / "m.onnx"
    out.write_bytes(b"precious")
    args = ["export", str(spec_path), "--weights", str(w), "-o", str(out), "--no-verify"]
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert main([*args, "--force"]) == 0
    onnx.checker.check_model(onnx.load(out))


def test_cli_verification_failure_exits_1_and_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    def wrong_relu(b: Any, node: Any) -> None:  # a broken emitter: sigmoid for relu
        b.op("Sigmoid", b.inputs(node), b.out(node), node.name)

    monkeypatch.setitem(EMITTERS, "relu", wrong_relu)
    out = tmp_path / "m.onnx"
    assert main(["export", str(ROOT / "specs" / "digits_cnn.yaml"), "-o", str(out)]) == 1
    assert "disagree" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.iterdir())
    graph = netspec.load(ROOT / "specs" / "digits_cnn.yaml")
    with pytest.raises(VerificationError):
        export_onnx(graph)


def test_cli_export_bad_opset_and_tolerance(tmp_path: Path) -> None:
    s = str(ROOT / "specs" / "digits_cnn.yaml")
    assert main(["export", s, "-o", str(tmp_path / "a.onnx"), "--opset", "10"]) == 2
    newest = onnx.defs.onnx_opset_version()
    assert main(["export", s, "-o", str(tmp_path / "a.onnx"), "--opset", str(newest + 1)]) == 2
    assert main(["export", s, "-o", str(tmp_path / "a.onnx"), "--tolerance", "-1"]) == 2
    assert not list(tmp_path.iterdir())


def test_cli_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec_path, w = _weights_file(tmp_path, "digits_cnn")
    model = tmp_path / "m.onnx"
    assert main(["export", str(spec_path), "--weights", str(w), "-o", str(model),
                 "--no-verify"]) == 0
    graph = netspec.load(spec_path)
    x = np.random.default_rng(0).standard_normal((3, *graph.input_shape)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    capsys.readouterr()
    assert main(["run", str(model), "--input", str(tmp_path / "x.npy"),
                 "--output", str(tmp_path / "y.npy"), "--bench", "5"]) == 0
    printed = capsys.readouterr().out
    y = np.load(tmp_path / "y.npy")
    weights, _ = load_weights(w)
    np.testing.assert_allclose(y, torch_eval(graph, weights, x)[0], atol=1e-4)
    assert f"output [3, {graph.output_shape[0]}]" in printed
    for i in range(3):
        assert f"sample {i}: class {int(y[i].argmax())}" in printed
    assert "p50" in printed and "p90" in printed and "p99" in printed

    np.save(tmp_path / "bad.npy", x[:, :, :-1])
    assert main(["run", str(model), "--input", str(tmp_path / "bad.npy")]) == 2
    assert "the model wants [batch" in capsys.readouterr().err
    np.save(tmp_path / "one.npy", x[0])
    assert main(["run", str(model), "--input", str(tmp_path / "one.npy")]) == 2
    assert "x[None]" in capsys.readouterr().err
    np.save(tmp_path / "f64.npy", x.astype(np.float64))
    assert main(["run", str(model), "--input", str(tmp_path / "f64.npy")]) == 2
    assert "float32" in capsys.readouterr().err


def test_runner_reads_the_model(tmp_path: Path) -> None:
    model, *_ = export(spec("- conv: {out: 2, k: 3}"))
    onnx.save(model, tmp_path / "m.onnx")
    r = OnnxRunner(tmp_path / "m.onnx")
    assert r.input_name == "input" and r.input_shape == ["batch", 4, 9, 9]
    assert r.input_dtype == np.float32
    assert r(np.zeros((2, 4, 9, 9), np.float32)).shape == (2, 2, 9, 9)
    lat = r.latency(np.zeros((1, 4, 9, 9), np.float32), 10)
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
