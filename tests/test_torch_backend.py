"""The PyTorch backend builds exactly the network that was counted.

Every expectation here is computed from torch's own functional ops or from formulas
written in the test (never from captured outputs): counts and tensor names against the
Graph, shapes against the Graph, each kind against its definition, the zoo specs
against hand-written torchvision copies (tests/reference_nets.py) by position.
"""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp
from zoo import REFERENCES, randomize

import netspec
from netspec.backends.torch import build, load_weights_into, param_groups, state_dict_numpy
from netspec.backends.torch.model import NODE_META, graph_module
from netspec.cli import main
from netspec.errors import UsageError
from netspec.graph import Graph
from netspec.weights import SHA_KEY, SPEC_KEY, load_weights

try:
    from strategies import spec_texts
except ImportError:  # another helper's file; the property test waits for it
    spec_texts = None

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))

SMALL = """
netspec: 1
name: small
input: [3, 16, 16]
vars: {classes: 5}
layers:
  - conv: {out: 8, k: 3, as: stem}
  - norm: batch
  - relu
  - residual:
      body:
        - conv: {out: 16, k: 3, stride: 2, bias: false}
        - norm: batch
        - relu
        - conv: {out: 16, k: 3, bias: false}
        - norm: batch
  - relu
  - norm: {kind: rms}
  - dense: {n: 2, body: [{norm: {kind: group, groups: 4}}, gelu, {conv: {out: 4, k: 3}}]}
  - upsample: 2
  - concat: [stem]
  - norm: {kind: layer}
  - maxpool: {k: 2}
  - global_avgpool
  - flatten
  - dropout: {drop: 0.1}
  - linear: {out: $classes}
"""


def spec(layers: str, input: str = "[4, 6, 5]") -> Graph:
    return netspec.loads(f"netspec: 1\nname: t\ninput: {input}\nlayers:\n{layers}")


def one(layer: str, input: str = "[4, 6, 5]") -> tuple[nn.Module, Graph]:
    """The module of a one-layer spec, and its graph."""
    g = spec(f"  - {layer}\n", input)
    model = build(g)
    return model.get_submodule(g.layers[0].name), g


def expected_state(g: Graph) -> list[tuple[str, tuple[int, ...]]]:
    """state_dict names and shapes in the order they must be registered: node by node,
    each node's parameters then its buffers (then torch's BN step counter)."""
    out = []
    for node in g.registration():
        assert node.args is not None
        ins = g.input_shapes(node)
        for key, shape in {**node.args.param_shapes(ins), **node.args.buffer_shapes(ins)}.items():
            out.append((f"{node.name}.{key}", tuple(shape)))
        if node.args.running_stats:
            out.append((f"{node.name}.num_batches_tracked", ()))
    return out


def check_structure(g: Graph, device: str = "cpu") -> None:
    """Count, tensor names, shapes and order, and every node's output shape."""
    model = build(g, device=device).eval()
    numel = sum(p.numel() for p in model.parameters())
    assert numel == g.params().params
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == expected_state(g)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")} == {
        k: tuple(s) for k, s in {**g.param_shapes(), **g.buffer_shapes()}.items()}
    x = torch.randn(2, *g.input_shape, device=device)
    with torch.no_grad():
        ShapeProp(model).propagate(x)
    seen = {}
    for n in model.graph.nodes:
        if NODE_META in n.meta:
            seen[n.meta[NODE_META]] = tuple(n.meta["tensor_meta"].shape)
    live = g.live()  # a layer held for its weights alone is never computed
    assert seen == {node.name: (2, *node.shape) for node in g if node.name in live}


def inplace_and_plain(g: Graph) -> tuple[nn.Module, nn.Module]:
    """The build as it runs (ReLUs and adds in place) and one where every op has a fresh
    output, with the same random weights, in training mode."""
    torch.manual_seed(0)
    model = build(g).train()
    randomize(model)
    plain = graph_module(g, inplace=False).train()
    plain.load_state_dict(model.state_dict())
    return model, plain


def check_inplace_is_invisible(g: Graph) -> None:
    """In-place ReLUs and adds change nothing: the same training step on a build where
    every op has a fresh output gives the same outputs and gradients (and autograd,
    which checks that nothing it saved was overwritten, does not object)."""
    model, plain = inplace_and_plain(g)
    x = torch.randn(3, *g.input_shape)
    results = []
    for m in (model, plain):
        torch.manual_seed(1)  # the same dropout masks
        xi = x.clone().requires_grad_()
        y = m(xi)
        (y * torch.linspace(-1, 1, y.numel()).view(y.shape)).sum().backward()
        results.append([y, xi.grad, *(p.grad for p in m.parameters())])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b)


def test_residual_add_under_autocast_keeps_the_float32_stream() -> None:
    """Under bf16 autocast a linear's bf16 output plus a float32 stream (after a learned
    position table) is float32, as the hand-written out-of-place sum is: the in-place
    add writes into the bf16 output only where the sum is bf16, never rounding the
    stream to it."""
    g = netspec.loads("""
netspec: 1
name: widening_residual
input: [4, 4, 4]
layers:
  - conv: {out: 8, k: 1}
  - tokens
  - pos_embed
  - residual: {body: [{linear: {out: 8}}]}
  - linear: {out: 3}
""")
    assert "add1" in g.inplace_nodes()
    model, plain = inplace_and_plain(g)
    x = torch.randn(2, *g.input_shape)
    seen = []
    model.get_submodule("fc2").register_forward_pre_hook(
        lambda m, args: seen.append(args[0].dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, reference = model(x), plain(x)
    assert seen == [torch.float32]
    torch.testing.assert_close(y, reference, rtol=0, atol=0)


# ------------------------------------------------------------------ coverage & structure


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_spec_builds_exactly_the_counted_network(path: Path) -> None:
    g = netspec.load(path)
    # a real forward where it is cheap; big networks on the meta device (same shape rules)
    check_structure(g, "cpu" if g.params().macs <= 2e9 else "meta")


def test_small_spec_structure_and_module_paths() -> None:
    g = netspec.loads(SMALL)
    check_structure(g)
    check_inplace_is_invisible(g)
    model = build(g)
    names = {name for name, _ in model.named_modules()}
    assert {"stem", "shortcut.conv1", "shortcut.bn1", "dense1.0.conv1", "fc1"} <= names
    assert type(model).__name__ == "Small"
    # the forward is generated code, not a loop over the Graph
    assert "stem" in model.code and "torch.cat" in model.code


def test_layer_named_like_a_module_attribute_is_refused_with_its_position() -> None:
    # refused when the spec is resolved (netspec validate), before any module exists
    with pytest.raises(netspec.SpecError, match="'train'") as e:
        build(spec("  - flatten\n  - linear: {out: 3, as: train}\n"))
    assert e.value.pos is not None and e.value.pos.line == 6


def test_vars_reach_the_built_model(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SMALL)
    model = build(path, classes=3)
    assert model.get_submodule("fc1").out_features == 3
    with pytest.raises(UsageError):
        build(netspec.loads(SMALL), classes=3)


# ------------------------------------------------------------------ norms


def test_layer_norm_per_channel() -> None:
    m, _ = one("norm: {kind: layer, eps: 1.0e-3}")
    randomize(m)
    x = torch.randn(3, 4, 6, 5)
    gamma, delta = m.weight, m.bias
    assert gamma.shape == delta.shape == (4,)
    mean = x.mean((1, 2, 3), keepdim=True)
    var = x.var((1, 2, 3), unbiased=False, keepdim=True)
    want = (x - mean) / torch.sqrt(var + 1e-3) * gamma.view(4, 1, 1) + delta.view(4, 1, 1)
    torch.testing.assert_close(m(x), want)
    torch.testing.assert_close(m(x), F.group_norm(x, 1, gamma, delta, 1e-3))


def test_layer_norm_per_element_and_none_and_features() -> None:
    m, _ = one("norm: {kind: layer, affine: element}")
    randomize(m)
    x = torch.randn(3, 4, 6, 5)
    assert m.weight.shape == (4, 6, 5)
    torch.testing.assert_close(m(x), F.layer_norm(x, [4, 6, 5], m.weight, m.bias, 1e-5))
    m, _ = one("norm: {kind: layer, affine: none}")
    assert not list(m.parameters())
    mean, var = x.mean((1, 2, 3), keepdim=True), x.var((1, 2, 3), unbiased=False, keepdim=True)
    torch.testing.assert_close(m(x), (x - mean) / torch.sqrt(var + 1e-5))
    m, _ = one("norm: {kind: layer}", "[7]")
    randomize(m)
    v = torch.randn(3, 7)
    torch.testing.assert_close(m(v), F.layer_norm(v, [7], m.weight, m.bias, 1e-5))


@pytest.mark.parametrize("over", ["channels", "channels+space"])
def test_rms_norm(over: str) -> None:
    m, _ = one(f"norm: {{kind: rms, over: {over}}}")
    randomize(m)
    x = torch.randn(3, 4, 6, 5)
    dims = (1,) if over == "channels" else (1, 2, 3)
    want = x / torch.sqrt((x * x).mean(dims, keepdim=True) + 1e-6) * m.weight.view(4, 1, 1)
    torch.testing.assert_close(m(x), want)
    m, _ = one(f"norm: {{kind: rms, over: {over}, affine: false}}", "[7]")
    v = torch.randn(3, 7)
    torch.testing.assert_close(m(v), v / torch.sqrt((v * v).mean(1, keepdim=True) + 1e-6))


def test_instance_and_group_norm() -> None:
    x = torch.randn(3, 4, 6, 5)
    m, _ = one("norm: instance")
    randomize(m)
    mean, var = x.mean((2, 3), keepdim=True), x.var((2, 3), unbiased=False, keepdim=True)
    want = (x - mean) / torch.sqrt(var + 1e-5) * m.weight.view(4, 1, 1) + m.bias.view(4, 1, 1)
    torch.testing.assert_close(m(x), want)
    m, _ = one("norm: {kind: group, groups: 2}")
    randomize(m)
    xg = x.view(3, 2, 2, 6, 5)
    mean, var = xg.mean((2, 3, 4), keepdim=True), xg.var((2, 3, 4), unbiased=False, keepdim=True)
    want = ((xg - mean) / torch.sqrt(var + 1e-5)).view(3, 4, 6, 5)
    torch.testing.assert_close(m(x), want * m.weight.view(4, 1, 1) + m.bias.view(4, 1, 1))


def test_batch_norm_train_output_and_momentum() -> None:
    m, _ = one("norm: {kind: batch, momentum: 0.25}")
    randomize(m)
    m.running_mean.zero_()
    m.running_var.fill_(1.0)
    m.train()
    x = torch.randn(8, 4, 6, 5) * 2 + 1
    mean = x.mean((0, 2, 3), keepdim=True)
    var = x.var((0, 2, 3), unbiased=False, keepdim=True)
    want = (x - mean) / torch.sqrt(var + 1e-5) * m.weight.view(4, 1, 1) + m.bias.view(4, 1, 1)
    torch.testing.assert_close(m(x), want)
    # running statistics: (1 − momentum)·old + momentum·batch, the variance unbiased
    torch.testing.assert_close(m.running_mean, 0.25 * mean.flatten())
    torch.testing.assert_close(m.running_var,
                               0.75 + 0.25 * x.var((0, 2, 3), unbiased=True))
    m, _ = one("norm: batch", "[6]")
    m.train()
    v = torch.randn(16, 6)
    want = (v - v.mean(0)) / torch.sqrt(v.var(0, unbiased=False) + 1e-5)
    torch.testing.assert_close(m(v), want)


def test_batch_norm_null_momentum_is_cumulative_average() -> None:
    m, _ = one("norm: {kind: batch, momentum: null}")
    m.train()
    batches = [torch.randn(4, 4, 6, 5) * (k + 1) + k for k in range(5)]
    for b in batches:
        m(b)
    means = torch.stack([b.mean((0, 2, 3)) for b in batches])
    variances = torch.stack([b.var((0, 2, 3), unbiased=True) for b in batches])
    torch.testing.assert_close(m.running_mean, means.mean(0))
    torch.testing.assert_close(m.running_var, variances.mean(0))


# ------------------------------------------------------------------ dropout


@pytest.mark.parametrize("scaling", ["classic", "inverted"])
@pytest.mark.parametrize("kind", ["element", "channel"])
def test_dropout(scaling: str, kind: str) -> None:
    keep = 0.75
    m, _ = one(f"dropout: {{keep: {keep}, kind: {kind}, scaling: {scaling}}}", "[32, 6, 5]")
    x = torch.rand(64, 32, 6, 5) + 0.5  # positive: a zero is always a dropped value
    survivor = x if scaling == "classic" else x / keep
    torch.manual_seed(0)
    m.train()
    outs = torch.stack([m(x) for _ in range(40)])
    dropped = outs == 0
    assert torch.all(dropped | torch.isclose(outs, survivor.expand_as(outs)))
    assert abs(dropped.float().mean().item() - (1 - keep)) < 0.01
    if kind == "channel":  # whole feature maps go together
        per_map = dropped.flatten(3).float().mean(3)
        assert torch.all((per_map == 0) | (per_map == 1))
    m.eval()
    at_inference = m(x)
    torch.testing.assert_close(at_inference, x * keep if scaling == "classic" else x)
    # both keep the expected activation of training equal to inference's
    torch.testing.assert_close(outs.mean(), at_inference.mean(), rtol=0.01, atol=0)


def test_channel_dropout_on_features_is_element_dropout() -> None:
    m, _ = one("dropout: {drop: 0.5, kind: channel}", "[4000]")
    x = torch.ones(2, 4000)
    zeros = (m.train()(x) == 0).float().mean().item()
    assert abs(zeros - 0.5) < 0.03


# ------------------------------------------------------------------ kinds vs torch functional


def test_conv_transpose_pools_upsample_activations_vs_functional() -> None:
    x = torch.randn(2, 4, 9, 8)
    m, _ = one("conv: {out: 6, k: 3, stride: 2, dilation: 2, groups: 2}", "[4, 9, 8]")
    torch.testing.assert_close(
        m(x), F.conv2d(x, m.weight, m.bias, stride=2, padding=2, dilation=2, groups=2))
    m, _ = one("conv: {out: 6, k: 5, bias: false}", "[4, 9, 8]")  # default pad keeps size
    assert m.bias is None
    torch.testing.assert_close(m(x), F.conv2d(x, m.weight, padding=2))
    m, _ = one("conv_transpose: {out: 6, k: 3, stride: 2, pad: 1, output_pad: 1, groups: 2}",
               "[4, 9, 8]")
    assert m.weight.shape == (4, 3, 3, 3)
    torch.testing.assert_close(m(x), F.conv_transpose2d(
        x, m.weight, m.bias, stride=2, padding=1, output_padding=1, groups=2))
    m, _ = one("maxpool: {k: 3, stride: 2, pad: 1, dilation: 2, ceil: true}", "[4, 9, 8]")
    torch.testing.assert_close(m(x), F.max_pool2d(x, 3, 2, 1, 2, ceil_mode=True))
    m, _ = one("avgpool: {k: 3, stride: 2, pad: 1, count_pad: false, ceil: true}", "[4, 9, 8]")
    torch.testing.assert_close(
        m(x), F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False))
    m, _ = one("adaptive_avgpool: [3, 2]", "[4, 9, 8]")
    torch.testing.assert_close(m(x), F.adaptive_avg_pool2d(x, (3, 2)))
    m, _ = one("upsample: {scale: 3, mode: bilinear}", "[4, 9, 8]")
    torch.testing.assert_close(
        m(x), F.interpolate(x, scale_factor=3, mode="bilinear", align_corners=False))
    m, _ = one("leaky_relu: 0.2", "[4, 9, 8]")
    torch.testing.assert_close(m(x), torch.where(x > 0, x, 0.2 * x))
    m, _ = one("gelu: tanh", "[4, 9, 8]")
    c = math.sqrt(2 / math.pi)
    torch.testing.assert_close(m(x), 0.5 * x * (1 + torch.tanh(c * (x + 0.044715 * x**3))))
    m, _ = one("relu6", "[4, 9, 8]")
    torch.testing.assert_close(m(x * 10), (x * 10).clamp(0, 6))


# ------------------------------------------------------------------ wiring: skips and merges

RESIDUALS = """
  - residual:
      body:
        - conv: {out: 4, k: 3, bias: false}
        - norm: batch
        - relu
        - conv: {out: 4, k: 3, bias: false}
        - norm: batch
  - relu
  - residual:
      body:
        - conv: {out: 6, k: 3, stride: 2, bias: false}
        - norm: batch
        - relu
        - conv: {out: 6, k: 3, bias: false}
        - norm: batch
  - relu
"""


def test_residual_identity_and_projection_vs_manual() -> None:
    g = spec(RESIDUALS, "[4, 8, 8]")
    model = build(g).eval()
    randomize(model)
    p = dict(model.named_parameters()) | dict(model.named_buffers())

    def conv(x: torch.Tensor, name: str, stride: int = 1, pad: int = 1) -> torch.Tensor:
        return F.conv2d(x, p[f"{name}.weight"], stride=stride, padding=pad)

    def bn(x: torch.Tensor, name: str) -> torch.Tensor:
        return F.batch_norm(x, p[f"{name}.running_mean"], p[f"{name}.running_var"],
                            p[f"{name}.weight"], p[f"{name}.bias"], False, 0.0, 1e-5)

    x = torch.randn(2, 4, 8, 8)
    h = F.relu(bn(conv(F.relu(bn(conv(x, "conv1"), "bn1")), "conv2"), "bn2") + x)
    body = bn(conv(F.relu(bn(conv(h, "conv3", stride=2), "bn3")), "conv4"), "bn4")
    short = bn(conv(h, "shortcut.conv1", stride=2, pad=0), "shortcut.bn1")
    assert p["shortcut.conv1.weight"].shape == (6, 4, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), F.relu(body + short))
    assert g.inplace_nodes() == {"relu1", "add1", "relu2", "relu3", "add2", "relu4"}
    check_inplace_is_invisible(g)
    # torchvision's order: the projection's tensors come after the body's
    keys = list(model.state_dict())
    assert keys.index("bn4.num_batches_tracked") < keys.index("shortcut.conv1.weight")


def test_dense_block_and_named_skip_vs_manual() -> None:
    g = spec("""
  - dense: {n: 3, body: [{norm: {kind: group, groups: 2}}, {conv: {out: 2, k: 3}}], as: db}
  - conv: {out: 4, k: 1, as: enc}
  - maxpool: {k: 2}
  - conv: {out: 4, k: 3}
  - upsample: 2
  - concat: [enc]
""", "[6, 4, 4]")
    model = build(g).eval()
    randomize(model)
    x = torch.randn(2, 6, 4, 4)
    features = [x]
    for i in range(3):
        gn, cv = model.get_submodule(f"db.{i}.gn1"), model.get_submodule(f"db.{i}.conv1")
        h = F.group_norm(torch.cat(features, 1), 2, gn.weight, gn.bias, 1e-5)
        features.append(F.conv2d(h, cv.weight, cv.bias, padding=1))
    enc_m, c = model.get_submodule("enc"), model.get_submodule("conv1")
    enc = F.conv2d(torch.cat(features, 1), enc_m.weight, enc_m.bias)
    up = F.interpolate(F.conv2d(F.max_pool2d(enc, 2), c.weight, c.bias, padding=1),
                       scale_factor=2, mode="nearest")
    with torch.no_grad():
        torch.testing.assert_close(model(x), torch.cat([up, enc], 1))


def test_add_of_three() -> None:
    g = spec("""
  - conv: {out: 4, k: 1, as: a}
  - conv: {out: 4, k: 1, as: b}
  - conv: {out: 4, k: 1}
  - add: [a, b]
""")
    model = build(g)
    x = torch.randn(2, 4, 6, 5)
    a = model.get_submodule("a")(x)
    b = model.get_submodule("b")(a)
    c = model.get_submodule("conv1")(b)
    with torch.no_grad():
        torch.testing.assert_close(model(x), c + a + b)


# ------------------------------------------------------------------ optimizer groups


def test_param_groups_keep_norms_and_biases_out_of_decay() -> None:
    g = spec("""
  - conv: {out: 4, k: 3}
  - norm: batch
  - conv: {out: 4, k: 3, bias: false}
  - norm: {kind: layer, affine: element}
  - norm: {kind: group, groups: 2}
  - norm: instance
  - norm: rms
  - conv_transpose: {out: 4, k: 2, stride: 2}
  - flatten
  - linear: {out: 3}
  - norm: layer
""")
    model = build(g)
    groups = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    by_decay = {grp["weight_decay"]: {names[id(p)] for p in grp["params"]} for grp in groups}
    assert by_decay[0.05] == {"conv1.weight", "conv2.weight", "up1.weight", "fc1.weight"}
    norms = {"bn1", "ln1", "gn1", "inorm1", "rms1", "ln2"}
    assert by_decay[0.0] == ({n for n in names.values() if n.rpartition(".")[0] in norms}
                             | {"conv1.bias", "up1.bias", "fc1.bias"})
    assert sum(len(grp["params"]) for grp in groups) == len(list(model.parameters()))
    torch.optim.AdamW(groups, lr=1e-3)  # usable as is


# ------------------------------------------------------------------ the zoo vs torchvision


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_zoo_matches_reference_by_position(name: str) -> None:
    path = ROOT / "specs" / f"{name}.yaml"
    if not path.exists():
        pytest.skip(f"no spec for {name}")
    torch.manual_seed(0)
    ref = REFERENCES[name]().eval()
    randomize(ref)
    shape = netspec.load(path).input_shape
    x = torch.randn(2, *shape)
    # every BN's statistics those of its own input on random images (a plain average
    # over one batch): with random statistics alone, YOLOv8's 20-odd layers shrink the
    # image's part of its outputs below the comparison's tolerance
    for bn in ref.modules():
        if isinstance(bn, torch.nn.modules.batchnorm._BatchNorm):
            bn.reset_running_stats()
            bn.momentum = None
    with torch.no_grad():
        ref.train()(torch.randn(2, *shape))
    ref.eval()
    ours = build(path).eval()
    theirs, mine = ref.state_dict(), ours.state_dict()
    assert len(theirs) == len(mine)
    with torch.no_grad():
        for (tk, tv), (mk, mv) in zip(theirs.items(), mine.items(), strict=True):
            assert tv.shape == mv.shape, (tk, mk)
            mv.copy_(tv)
        got, want = ours(x), ref(x)
        # a detector returns its outputs as a tuple (netspec) or a list (Ultralytics)
        got = list(got) if isinstance(got, tuple) else [got]
        want = list(want) if isinstance(want, list | tuple) else [want]
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            scale = float(b.abs().max())
            # the comparison means something: the two images' outputs differ far
            # beyond its tolerance
            assert float((b[1] - b[0]).abs().max()) > 0.01 * scale, name
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * scale)


# ------------------------------------------------------------------ training machinery


@pytest.mark.slow
def test_torch_compile_fullgraph() -> None:
    model = build(netspec.loads(SMALL)).eval()
    x = torch.randn(2, 3, 16, 16)
    # aot_eager: dynamo's whole-graph capture and AOT autograd, without inductor's C++
    # build (about a minute on a small CPU; it passes too)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)


def test_channels_last_and_bf16_autocast() -> None:
    model = build(netspec.loads(SMALL)).eval()
    randomize(model)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        want = model(x)
        model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
        got = model_cl(x.to(memory_format=torch.channels_last))
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    assert y.shape == (2, 5) and torch.isfinite(y).all()
    y.float().sum().backward()
    assert all(p.grad is not None for p in model.parameters())


#: DDP over a netspec model, in a process of its own: gloo's process group, torn down, may
#: wait forever on one of its threads (seen once in a dozen suite runs, torch 2.13, a
#: loaded machine: ~ProcessGroupGloo joining in C++, where no test timeout can reach),
#: so the child says what it checked and leaves without the teardown
DDP_CHILD = """
import os, sys, torch, torch.distributed as dist
from torch import nn
import netspec
from netspec.backends.torch import build
model = build(netspec.loads(sys.argv[1]))
dist.init_process_group("gloo", store=dist.FileStore(sys.argv[2], 1), rank=0, world_size=1)
ddp = nn.parallel.DistributedDataParallel(model)
ddp(torch.randn(2, 3, 16, 16)).sum().backward()
print("grad" if model.get_submodule("stem").weight.grad is not None else "no grad", flush=True)
os._exit(0)
"""


def test_deepcopy_keeps_graph_and_ddp_wraps(tmp_path: Path) -> None:
    import torch.distributed as dist

    g = netspec.loads(SMALL)
    model = build(g)
    clone = copy.deepcopy(model)
    assert clone.netspec_graph.name == "small"
    assert list(clone.state_dict()) == list(model.state_dict())
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("no gloo")
    done = subprocess.run([sys.executable, "-c", DDP_CHILD, SMALL, str(tmp_path / "store")],
                          capture_output=True, text=True, timeout=100, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (done.returncode, done.stdout) == (0, "grad\n"), done.stderr


def test_weights_round_trip(tmp_path: Path) -> None:
    g = netspec.loads(SMALL)
    torch.manual_seed(1)
    a = build(g)
    randomize(a, seed=3)
    from netspec.weights import save_weights, spec_metadata

    path = tmp_path / "w.safetensors"
    save_weights(path, state_dict_numpy(a), spec_metadata(g))
    b = build(g)
    meta = load_weights_into(b, path)
    assert meta[SPEC_KEY] == g.spec_text
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb
        torch.testing.assert_close(va, vb)
    other = build(netspec.loads(SMALL.replace("classes: 5", "classes: 6")))
    with pytest.raises(UsageError, match=r"fc1\.weight"):
        load_weights_into(other, path)


# ------------------------------------------------------------------ the command


def small_spec(tmp_path: Path) -> Path:
    digits = ROOT / "specs" / "digits_cnn.yaml"
    if digits.exists():
        return digits
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    return path


def netspec_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netspec", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_build_writes_weights_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = small_spec(tmp_path)
    out = tmp_path / "w.safetensors"
    r = netspec_cli("build", str(path), "-o", str(out), "--seed", "3")
    assert r.returncode == 0, r.stderr
    assert "parameters" in r.stdout
    tensors, meta = load_weights(out)
    g = netspec.load(path)
    assert meta[SPEC_KEY] == path.read_text() == g.spec_text
    assert meta[SHA_KEY] == g.spec_sha256
    assert sum(v.size for k, v in tensors.items()
               if k in g.param_shapes()) == g.params().params
    before = out.read_bytes()
    r = netspec_cli("build", str(path), "-o", str(out), "--seed", "4")
    assert r.returncode == 2 and "--force" in r.stderr
    assert out.read_bytes() == before
    # in process: the same entry point, without paying for another torch import
    assert main(["build", str(path), "-o", str(out), "--seed", "4", "--force"]) == 0
    assert out.read_bytes() != before


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cli_cuda_without_cuda_is_a_usage_error(tmp_path: Path) -> None:
    r = netspec_cli("build", str(small_spec(tmp_path)), "--device", "cuda")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "CUDA" in r.stderr


# ------------------------------------------------------------------ random specs


@pytest.mark.skipif(spec_texts is None, reason="tests/strategies.py not there yet")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=spec_texts() if spec_texts is not None else st.nothing())
def test_random_specs_build_as_counted(drawn: tuple[str, tuple[int, ...]]) -> None:
    text, out = drawn
    g = netspec.loads(text)
    assert g.output_shape == out
    check_structure(g)
    check_inplace_is_invisible(g)


def test_core_reserves_every_public_torch_module_attribute() -> None:
    """`netspec validate` refuses the names the torch backend could not use (a layer named
    `train` would shadow Module.train): the core's list must cover this torch's attributes."""
    from torch import fx

    from netspec.names import RESERVED_NAMES

    attrs = set(dir(fx.GraphModule(nn.Module(), fx.Graph()))) | set(dir(nn.Module()))
    public = {a for a in attrs if not a.startswith("_")}
    assert public - RESERVED_NAMES == set()
