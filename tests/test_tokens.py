"""The token kinds and attention against torch's own modules and formulas written here:
nn.MultiheadAttention (weights copied), softmax(q·kᵀ/√d)·v spelt out with einsum,
torch's FLOP counter for the MACs, and the layouts' index arithmetic."""

from __future__ import annotations

import json
import math
from pathlib import Path

import onnx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import netspec
from netspec.backends.torch import param_groups
from netspec.cli import main


def net(layers: str, inp: str = "[8, 4, 5]", **vars: object) -> netspec.Graph:
    return netspec.loads(f"netspec: 1\nname: t\ninput: {inp}\nlayers:\n{layers}", **vars)


def built(layers: str, inp: str = "[8, 4, 5]", seed: int = 0) -> tuple[nn.Module, netspec.Graph]:
    g = net(layers, inp)
    torch.manual_seed(seed)
    return netspec.build(g), g


def attention_formula(x: torch.Tensor, m: nn.Module, heads: int, hd: int, kd: int
                      ) -> torch.Tensor:
    """softmax(q·kᵀ/√kd)·v per head on [B, N, D], heads joined and projected, with the
    module's qkv and proj weights."""
    b, n, _ = x.shape
    qkv = x @ m.qkv.weight.T + (m.qkv.bias if m.qkv.bias is not None else 0)
    q, k, v = qkv.split([heads * kd, heads * kd, heads * hd], -1)
    q, k = q.reshape(b, n, heads, kd), k.reshape(b, n, heads, kd)
    w = torch.softmax(torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(kd), dim=-1)
    o = torch.einsum("bhij,bjhd->bihd", w, v.reshape(b, n, heads, hd)).reshape(b, n, -1)
    return o @ m.proj.weight.T + (m.proj.bias if m.proj.bias is not None else 0)


@pytest.mark.parametrize("train", [False, True])
def test_attention_equals_torch_multihead_attention(train: bool) -> None:
    """Self-attention on tokens is nn.MultiheadAttention's, its in_proj as qkv, its
    out_proj as proj, in eval and in training (no dropout)."""
    model, g = built("- tokens\n- attention: {heads: 4, as: a}")
    mha = nn.MultiheadAttention(8, 4, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.normal_()
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    state = {"a.qkv.weight": mha.in_proj_weight, "a.qkv.bias": mha.in_proj_bias,
             "a.proj.weight": mha.out_proj.weight, "a.proj.bias": mha.out_proj.bias}
    model.load_state_dict(state)
    model.train(train), mha.train(train)
    x = torch.randn(3, 8, 4, 5)
    t = x.flatten(2).transpose(1, 2)
    with torch.no_grad():
        want, _ = mha(t, t, t, need_weights=False)
        torch.testing.assert_close(model(x), want, atol=1e-5, rtol=1e-5)
    assert g.params().params == sum(p.numel() for p in mha.parameters())


@settings(max_examples=12, deadline=None)
@given(heads=st.integers(1, 3), hd=st.integers(1, 4), kd=st.one_of(st.none(), st.integers(1, 4)),
       qkv_bias=st.booleans(), out_bias=st.booleans(), on_map=st.booleans())
def test_attention_follows_the_formula(heads: int, hd: int, kd: int | None, qkv_bias: bool,
                                       out_bias: bool, on_map: bool) -> None:
    """Any head size, a narrower key size (C2PSA's), without biases, over tokens or a
    map's positions: the formula above; parameters as counted; MACs as torch's FLOP
    counter finds them (two FLOPs a multiply-accumulate)."""
    key = "" if kd is None else f", key_dim: {kd}"
    opts = f"{{heads: {heads}, head_dim: {hd}{key}, qkv_bias: {str(qkv_bias).lower()}, " \
           f"out_bias: {str(out_bias).lower()}, as: a}}"
    layers = f"- attention: {opts}" if on_map else f"- tokens\n- attention: {opts}"
    model, g = built(layers, "[6, 3, 4]")
    model.eval()
    x = torch.randn(2, 6, 3, 4)
    t = x.flatten(2).transpose(1, 2)
    a = model.get_submodule("a")
    with torch.no_grad():
        want = attention_formula(t, a, heads, hd, kd or hd)
        got = model(x)
    if on_map:
        want = want.transpose(1, 2).reshape(2, 6, 3, 4)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert g.params().params == sum(p.numel() for p in model.parameters())
    # the math kernel's matmuls: the counter has no rule for the CPU's flash kernel
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as flops, \
            torch.no_grad():
        model(x[:1])
    assert g.params().macs == flops.get_total_flops() // 2


def test_map_and_tokens_are_each_others_inverse() -> None:
    """Token n is position (n // W, n % W) of the map; map lays them back."""
    model, _ = built("- tokens\n- map: [4, 5]")
    x = torch.randn(2, 8, 4, 5)
    tokens = netspec.build(net("- tokens")).eval()(x)
    for n in range(20):
        torch.testing.assert_close(tokens[:, n], x[:, :, n // 5, n % 5])
    torch.testing.assert_close(model(x), x)


def test_class_token_position_table_and_select() -> None:
    """The class token goes first and starts at 0 (torchvision); the table is drawn from
    N(0, 0.02²); select takes one token or the mean; neither learned input decays."""
    model, _ = built("- tokens\n- class_token: {as: c}\n- pos_embed: {as: p}\n"
                     "- select: {token: 0, as: s}", "[64, 12, 16]")
    cls, pos = model.get_submodule("c").token, model.get_submodule("p").weight
    assert cls.shape == (1, 1, 64) and not cls.any()
    assert pos.shape == (1, 193, 64)
    assert abs(pos.std().item() - 0.02) < 0.002 and abs(pos.mean().item()) < 0.002
    x = torch.randn(2, 64, 12, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), cls[0, 0] + pos[0, 0] + 0 * x[:, :, 0, 0])
    no_decay = next(grp for grp in param_groups(model, 0.05) if grp["weight_decay"] == 0)
    assert {id(cls), id(pos)} <= {id(p) for p in no_decay["params"]}
    mean = netspec.build(net("- tokens\n- select: mean")).eval()
    torch.testing.assert_close(mean(x), x.mean(dim=(2, 3)))
    last = netspec.build(net("- tokens\n- select: -1")).eval()
    torch.testing.assert_close(last(x), x[:, :, -1, -1])


def test_timm_class_token_is_drawn_with_its_std() -> None:
    model, _ = built("- tokens\n- class_token: {std: 0.5, as: c}", "[4000, 2, 2]")
    token = model.get_submodule("c").token
    assert abs(token.std().item() - 0.5) < 0.05


def test_flat_layer_scale_on_a_map_is_a_per_channel_vector() -> None:
    """timm's ConvNeXt γ: a [C] tensor multiplying each channel of a map."""
    model, g = built("- layer_scale: {init: 0.5, flat: true, as: s}")
    assert g.param_shapes() == {"s.weight": (8,)}
    gamma = torch.randn(8)
    model.load_state_dict({"s.weight": gamma})
    x = torch.randn(2, 8, 4, 5)
    torch.testing.assert_close(model(x), x * gamma[None, :, None, None])


def test_token_layers_equal_torch_modules() -> None:
    """Linear, LayerNorm and GELU on tokens are nn.Linear, nn.LayerNorm(D) and nn.GELU
    on [B, N, D]; the layer scale multiplies each token's features."""
    model, g = built("- tokens\n- norm: {kind: layer, eps: 1e-6, as: n}\n"
                     "- linear: {out: 6, as: f}\n- gelu: tanh\n- layer_scale: {init: 0.3, as: s}")
    ln = nn.LayerNorm(8, eps=1e-6)
    fc = nn.Linear(8, 6)
    with torch.no_grad():
        ln.weight.normal_(), ln.bias.normal_()
    model.load_state_dict({"n.weight": ln.weight, "n.bias": ln.bias, "f.weight": fc.weight,
                           "f.bias": fc.bias, "s.weight": torch.full((6,), 0.3)})
    x = torch.randn(2, 8, 4, 5)
    t = x.flatten(2).transpose(1, 2)
    with torch.no_grad():
        want = nn.functional.gelu(fc(ln(t)), approximate="tanh") * 0.3
        torch.testing.assert_close(model(x), want)
    assert g.output_shape == (20, 6)


def ultralytics_attention(qkv: torch.Tensor, heads: int, kd: int, hd: int) -> torch.Tensor:
    """YOLO11's C2PSA attention after its qkv conv, as Ultralytics writes it: each head's
    q, k, v side by side along the channels; (v·attnᵀ) viewed back as a map."""
    b, _, h, w = qkv.shape
    q, k, v = qkv.view(b, heads, 2 * kd + hd, h * w).split([kd, kd, hd], dim=2)
    attn = ((q.transpose(-2, -1) @ k) * kd ** -0.5).softmax(dim=-1)
    return (v @ attn.transpose(-2, -1)).view(b, heads * hd, h, w)


@pytest.mark.parametrize(("heads", "kd", "hd"), [(1, 2, 4), (2, 1, 3), (2, 2, 2)])
def test_attention_without_projections_reads_ultralytics_layout(heads: int, kd: int,
                                                                hd: int) -> None:
    """``project: false, layout: heads`` on a map of heads·(2·kd + hd) channels: no
    weights, the heads' values joined; key_dim alone fixes head_dim and vice versa."""
    c = heads * (2 * kd + hd)
    x = torch.randn(2, c, 3, 4)
    want = ultralytics_attention(x, heads, kd, hd)
    for size in (f"key_dim: {kd}", f"head_dim: {hd}"):
        model, g = built(f"- attention: {{heads: {heads}, {size}, project: false, "
                         "layout: heads}", f"[{c}, 3, 4]")
        assert g.params().params == 0 and g.output_shape == (heads * hd, 3, 4)
        torch.testing.assert_close(model.eval()(x), want)


def test_attention_without_projections_on_tokens_in_torch_layout() -> None:
    """``project: false`` (layout qkv) is nn.MultiheadAttention's core: its in_proj's
    output in, the heads joined out, before out_proj."""
    mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    model, _ = built("- tokens\n- attention: {heads: 2, project: false}", "[24, 3, 4]")
    t = torch.randn(2, 12, 8)
    qkv = t @ mha.in_proj_weight.T + mha.in_proj_bias
    x = qkv.transpose(1, 2).reshape(2, 24, 3, 4)
    with torch.no_grad():
        want, _ = mha(t, t, t, need_weights=False)
        got = model.eval()(x) @ mha.out_proj.weight.T + mha.out_proj.bias
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


VIT_SMALL = """netspec: 1
name: vit_small
input: [3, 16, 16]
layers:
  - conv: {out: 16, k: 4, stride: 4, pad: 0}
  - tokens
  - class_token: {std: 0.02}
  - pos_embed
  - residual:
      body: [{norm: layer}, {attention: 4}]
  - residual:
      body: [{norm: layer}, {linear: {out: 32}}, gelu, {linear: {out: 16}}]
  - norm: layer
  - select: 0
  - linear: {out: 10}
"""


@pytest.mark.parametrize("opset", [17, 23])
def test_int8_quantizes_attention_and_names_what_stays_float(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], opset: int) -> None:
    """onnxruntime's quantizer puts every MatMul of a ViT — projections, q·kᵀ and the
    weights·v — between DequantizeLinears (below opset 23; from 23 ONNX's Attention node,
    which stays float); the layers onnxruntime runs in float are named with why."""
    spec = tmp_path / "vit.yaml"
    spec.write_text(VIT_SMALL)
    out = tmp_path / "vit.onnx"
    assert main(["export", str(spec), "-o", str(out), "--opset", str(opset), "--precision",
                 "int8", "--calibration-data", "random", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)["int8"]
    model = onnx.load(str(out))
    made = {o: n.op_type for n in model.graph.node for o in n.output}
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    assert len(matmuls) == (6 if opset < 23 else 4)  # qkv, proj, MLP ×2 (+ the two)
    for n in matmuls:
        assert [made.get(i) for i in n.input] == ["DequantizeLinear"] * 2, n.name
    assert report["top1_agreement"] >= 0.9 and report["compared"] > 0
    assert {"ln1", "ln2", "ln3"} <= set(report["float_layers"])
    assert all("in float" in why for why in report["float_layers"].values())
