"""Property tests over random valid specs (tests/strategies.py).

Shapes and counts are checked against independent references: torch's own modules,
built here from the layer's options (a small mapping written in this file, with the
documented defaults), the textbook parameter formulas, and — for whole networks — the
torch backend's GraphModule run through ShapeProp.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable
from math import prod
from typing import Any

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from strategies import SingleLayer, single_layer_specs, spec_texts
from torch import nn

import netspec
from netspec.entries import op_class

Shape = tuple[int, ...]

#: NETSPEC_EXAMPLES=2000 for a longer hunt; the defaults keep the file under a minute
EXAMPLES = int(os.environ.get("NETSPEC_EXAMPLES", "80"))
SETTINGS = settings(deadline=None, max_examples=EXAMPLES,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEW = settings(SETTINGS, max_examples=max(1, EXAMPLES // 4))

COUNTED = ("conv", "conv_transpose", "linear", "norm")


def _t(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _p(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (v[0], v[1])


class ChannelsLast(nn.Module):
    """Applies a module normalising the last dim to the channel axis of NCHW."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class RMSOverAll(nn.Module):
    """RMS norm over channels and space with γ per channel."""

    def __init__(self, c: int, affine: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * torch.rsqrt(x.pow(2).mean((1, 2, 3), keepdim=True) + 1e-6)
        return y if self.weight is None else y * self.weight.view(-1, 1, 1)


def _conv(o: dict[str, Any], shape: Shape) -> nn.Module:
    k, dil = _p(o["k"]), _p(o.get("dilation", 1))
    pad = o["pad"] if "pad" in o else (dil[0] * (k[0] - 1) // 2, dil[1] * (k[1] - 1) // 2)
    return nn.Conv2d(shape[0], o["out"], k, stride=_t(o.get("stride", 1)), padding=_t(pad),
                     dilation=dil, groups=o.get("groups", 1), bias=o.get("bias", True))


def _conv_transpose(o: dict[str, Any], shape: Shape) -> nn.Module:
    return nn.ConvTranspose2d(shape[0], o["out"], _t(o["k"]), stride=_t(o.get("stride", 1)),
                              padding=_t(o.get("pad", 0)),
                              output_padding=_t(o.get("output_pad", 0)),
                              groups=o.get("groups", 1), bias=o.get("bias", True),
                              dilation=_t(o.get("dilation", 1)))


def _batchnorm(o: dict[str, Any], shape: Shape) -> nn.Module:
    cls = nn.BatchNorm1d if len(shape) == 1 else nn.BatchNorm2d
    return cls(shape[0], momentum=o.get("momentum", 0.1), affine=o.get("affine", True))


def _layernorm(o: dict[str, Any], shape: Shape) -> nn.Module:
    c, affine = shape[0], o.get("affine", True)
    mode = {True: "channel", False: "none"}.get(affine, affine)
    if len(shape) == 2:  # tokens: each token over its features
        return nn.LayerNorm(shape[1], elementwise_affine=mode != "none")
    if len(shape) == 3 and o.get("over") == "channels":  # ConvNeXt's LayerNorm2d
        return ChannelsLast(nn.LayerNorm(c, elementwise_affine=mode != "none"))
    if len(shape) == 1:
        return nn.LayerNorm(c, elementwise_affine=mode != "none")
    if mode == "channel":
        return nn.GroupNorm(1, c)
    return nn.LayerNorm(list(shape), elementwise_affine=mode == "element")


def _rmsnorm(o: dict[str, Any], shape: Shape) -> nn.Module:
    c, affine = shape[0], o.get("affine", True)
    if len(shape) == 1:
        return nn.RMSNorm(c, elementwise_affine=affine)
    if o.get("over", "channels") == "channels":
        return ChannelsLast(nn.RMSNorm(c, elementwise_affine=affine))
    return RMSOverAll(c, affine)


def _dropout(o: dict[str, Any], shape: Shape) -> nn.Module:
    p = o["drop"] if "drop" in o else 1 - o["keep"]
    return nn.Dropout2d(p) if o.get("kind") == "channel" else nn.Dropout(p)


def _window(o: dict[str, Any]) -> dict[str, Any]:
    return {"kernel_size": _t(o["k"]), "stride": _t(o.get("stride")),
            "padding": _t(o.get("pad", 0)), "ceil_mode": o.get("ceil", False)}


Reference = Callable[[dict[str, Any], Shape], nn.Module]

#: the torch module each op means, from a layer's options (as the spec gave them) and its
#: input shape, with the documented defaults written here — one entry per op, keyed as
#: the registry keys kinds (tests/test_kinds_registry.py checks none is missing)
REFERENCES: dict[str, Reference] = {
    "conv": _conv,
    "conv_transpose": _conv_transpose,
    "linear": lambda o, s: nn.Linear(s[-1], o["out"], bias=o.get("bias", True)),
    "batchnorm": _batchnorm,
    "layernorm": _layernorm,
    "instancenorm": lambda o, s: nn.InstanceNorm2d(s[0], affine=o.get("affine", True)),
    "groupnorm": lambda o, s: nn.GroupNorm(o["groups"], s[0], affine=o.get("affine", True)),
    "rmsnorm": _rmsnorm,
    "dropout": _dropout,
    "drop_path": lambda o, s: nn.Identity(),  # stochastic depth is the identity at inference
    "relu": lambda o, s: nn.ReLU(),
    "relu6": lambda o, s: nn.ReLU6(),
    "gelu": lambda o, s: nn.GELU(approximate=o.get("approximate", "none")),
    "silu": lambda o, s: nn.SiLU(),
    "sigmoid": lambda o, s: nn.Sigmoid(),
    "tanh": lambda o, s: nn.Tanh(),
    "leaky_relu": lambda o, s: nn.LeakyReLU(o.get("slope", 0.01)),
    "hardswish": lambda o, s: nn.Hardswish(),
    "hardsigmoid": lambda o, s: nn.Hardsigmoid(),
    "mish": lambda o, s: nn.Mish(),
    "elu": lambda o, s: nn.ELU(o.get("alpha", 1.0)),
    "softplus": lambda o, s: nn.Softplus(o.get("beta", 1.0), o.get("threshold", 20.0)),
    "softmax": lambda o, s: nn.Softmax(dim=1),
    "prelu": lambda o, s: nn.PReLU(s[0] if o.get("per_channel") else 1,
                                   init=o.get("init", 0.25)),
    "maxpool": lambda o, s: nn.MaxPool2d(dilation=_t(o.get("dilation", 1)), **_window(o)),
    "avgpool": lambda o, s: nn.AvgPool2d(count_include_pad=o.get("count_pad", True),
                                         **_window(o)),
    "adaptive_avgpool": lambda o, s: nn.AdaptiveAvgPool2d(_t(o["size"])),
    "global_avgpool": lambda o, s: nn.AdaptiveAvgPool2d(1),
    "flatten": lambda o, s: nn.Flatten(),
    "upsample": lambda o, s: nn.Upsample(scale_factor=float(o["scale"]),
                                         mode=o.get("mode", "nearest")),
    "shuffle": lambda o, s: nn.ChannelShuffle(o["groups"]),
    # torchvision ConvNeXt: γ of shape [C, 1, 1]; timm's (flat) and on tokens [C] / [D]
    "layer_scale": lambda o, s: LayerScaleRef(s[-1] if len(s) == 2 else s[0],
                                              1 if o.get("flat") else len(s),
                                              o.get("init", 1e-6)),
    "dfl": lambda o, s: DFLRef(o.get("bins", 16)),
    "tokens": lambda o, s: TokensRef(),
    "map": lambda o, s: nn.Unflatten(2, tuple(o["size"])),  # after the transpose below
    "class_token": lambda o, s: ClassTokenRef(s[1]),
    "pos_embed": lambda o, s: PosEmbedRef(*s),
    "select": lambda o, s: SelectRef(o["token"]),
    "attention": lambda o, s: AttentionRef(o, s),
    "window_attention": lambda o, s: WindowAttentionRef(o, s),
    "patch_merge": lambda o, s: PatchMergeRef(),
}

#: ops that read several named tensors (merges) or make several nodes (split): no single
#: layer means them; the whole-spec test checks them against the torch backend's ShapeProp
WHOLE_SPEC_ONLY = frozenset({"add", "concat", "mul", "split"})


def reference_module(layer: SingleLayer) -> nn.Module:
    """The torch module a layer means (REFERENCES, by the layer's op)."""
    cls = op_class(layer.kind, layer.options)
    assert cls is not None, layer.kind
    ref = REFERENCES[cls.op](layer.options, layer.input_shape)
    if cls.op == "map":  # tokens [B, N, D] → [B, D, N] → [B, D, H, W]
        return nn.Sequential(Transpose12(), ref)
    return ref


class Transpose12(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


class DFLRef(nn.Module):
    """Ultralytics' DFL: per box side, softmax over the bins, then a frozen 1×1 conv
    with weights 0 … bins−1 gives the expected bin."""

    def __init__(self, bins: int) -> None:
        super().__init__()
        self.bins = bins
        self.conv = nn.Conv2d(bins, 1, 1, bias=False).requires_grad_(False)
        self.conv.weight.data[:] = torch.arange(bins, dtype=torch.float).view(1, bins, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        p = x.view(n, 4, self.bins, h * w).transpose(2, 1).softmax(1)
        return self.conv(p).view(n, 4, h, w)


class LayerScaleRef(nn.Module):
    def __init__(self, c: int, rank: int, init: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((c, 1, 1) if rank == 3 else (c,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and self.weight.dim() == 1:
            return x * self.weight[:, None, None]
        return x * self.weight


class TokensRef(nn.Module):
    """[B, C, H, W] → [B, H·W, C]: every position a token, row by row."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x[:, :, i, j] for i in range(x.shape[2])
                            for j in range(x.shape[3])], dim=1)


class ClassTokenRef(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 1, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.token.repeat(x.shape[0], 1, 1), x], dim=1)


class PosEmbedRef(nn.Module):
    def __init__(self, n: int, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, n, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight


class SelectRef(nn.Module):
    def __init__(self, token: int | str) -> None:
        super().__init__()
        self.token = token

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(1) if self.token == "mean" else x[:, self.token, :]


class AttentionRef(nn.Module):
    """softmax(q·kᵀ/√key_dim)·v per head, written out with einsum, q|k|v from one
    linear map (rows: all heads' queries, then keys, then values), heads joined and
    projected back; over a map's positions on [C, H, W]."""

    def __init__(self, o: dict[str, Any], s: Shape) -> None:
        super().__init__()
        d = s[1] if len(s) == 2 else s[0]
        self.h = o["heads"]
        self.hd = o.get("head_dim") or (o.get("dim") or d) // self.h
        self.kd = o.get("key_dim") or self.hd
        self.qkv = nn.Linear(d, self.h * (2 * self.kd + self.hd), bias=o.get("qkv_bias", True))
        self.proj = nn.Linear(self.h * self.hd, d, bias=o.get("out_bias", True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = x.dim() == 4
        t = x.flatten(2).transpose(1, 2) if image else x
        b, n, _ = t.shape
        q, k, v = self.qkv(t).split([self.h * self.kd, self.h * self.kd, self.h * self.hd], -1)
        q, k = q.reshape(b, n, self.h, self.kd), k.reshape(b, n, self.h, self.kd)
        w = torch.einsum("bihd,bjhd->bhij", q, k).div(self.kd ** 0.5).softmax(-1)
        o = torch.einsum("bhij,bjhd->bihd", w, v.reshape(b, n, self.h, self.hd))
        y = self.proj(o.reshape(b, n, self.h * self.hd))
        return y.transpose(1, 2).reshape(x.shape) if image else y


class WindowAttentionRef(nn.Module):
    """Shifted-window attention as one attention over every position of the padded map
    (Liu et al., 2021, from the paper's description, not torchvision's code): no roll
    and no windows cut out, but a pair of positions may attend only when the shift puts
    them in the same window; the table's bias for their offset inside it, and −100
    between positions the shift brought together from different regions. Padded
    (bottom, right) with zeros to whole windows, cropped after; no shift along an axis
    that holds one window."""

    def __init__(self, o: dict[str, Any], s: Shape) -> None:
        super().__init__()
        c, h, w = s
        self.heads, self.size = o["heads"], (h, w)
        (wh, ww), shift = _p(o.get("window", 7)), _p(o.get("shift", 0))
        self.relative_position_bias_table = nn.Parameter(
            torch.randn((2 * wh - 1) * (2 * ww - 1), self.heads))
        self.qkv = nn.Linear(c, 3 * c, bias=o.get("qkv_bias", True))
        self.proj = nn.Linear(c, c, bias=o.get("out_bias", True))
        hp, wp = -(-h // wh) * wh, -(-w // ww) * ww
        sh, sw = (0 if wh >= hp else shift[0]), (0 if ww >= wp else shift[1])
        self.padded = (hp, wp)

        def place(i: int, n: int, k: int, s: int) -> tuple[int, int, int]:
            """(window, place in it, region) along one axis of a position of the map:
            rolled by −s it sits at (i − s) mod n; the last window's part that came
            from the start of the axis is a region apart, as is the rest of it."""
            j = (i - s) % n
            region = 0 if s == 0 or j < n - k else (1 if j < n - s else 2)
            return j // k, j % k, region

        cells = [(place(r, hp, wh, sh), place(q, wp, ww, sw))
                 for r in range(hp) for q in range(wp)]
        # plain tensors, not buffers: the layer has none
        self.together = torch.tensor([[a[0][0] == b[0][0] and a[1][0] == b[1][0]
                                       for b in cells] for a in cells])
        self.apart = torch.tensor([[(a[0][2], a[1][2]) != (b[0][2], b[1][2])
                                    for b in cells] for a in cells])
        self.row = torch.tensor([[(a[0][1] - b[0][1] + wh - 1) * (2 * ww - 1)
                                  + a[1][1] - b[1][1] + ww - 1 for b in cells] for a in cells])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (h, w), (hp, wp), heads = self.size, self.padded, self.heads
        b, c = x.shape[:2]
        t = nn.functional.pad(x, (0, wp - w, 0, hp - h)).flatten(2).transpose(1, 2)
        q, k, v = (u.unflatten(-1, (heads, c // heads)).transpose(1, 2)
                   for u in self.qkv(t).chunk(3, -1))
        scores = q @ k.transpose(-2, -1) * (c // heads) ** -0.5
        scores = scores + self.relative_position_bias_table[self.row].permute(2, 0, 1)
        scores = (scores - 100.0 * self.apart).masked_fill(~self.together, float("-inf"))
        o = (scores.softmax(-1) @ v).transpose(1, 2).flatten(2)
        return self.proj(o).transpose(1, 2).reshape(b, c, hp, wp)[:, :, :h, :w]


class PatchMergeRef(nn.Module):
    """torch's pixel_unshuffle (channel c·4 + 2·dh + dw), its channels reordered to Swin's
    (2·dw + dh)·C + c."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.pixel_unshuffle(x, 2)
        b, c4, h, w = y.shape
        return y.view(b, c4 // 4, 2, 2, h, w).permute(0, 3, 2, 1, 4, 5).reshape(b, c4, h, w)


def _local(shapes: dict[str, tuple[int, ...]], prefix: str = "") -> dict[str, tuple[int, ...]]:
    """Tensor names without ``prefix`` (a layer's node name), or with their module path
    dropped when no prefix is given (a reference's wrapper: ``inner.weight``) — but a
    module's own parts kept (``qkv.weight``)."""
    out = {}
    for k, v in shapes.items():
        k = k.removeprefix(prefix)
        out[k if prefix or k.split(".")[0] in ("qkv", "proj") else k.rsplit(".", 1)[-1]] = tuple(v)
    return out


def _summary(g: netspec.Graph) -> list[tuple[Any, ...]]:
    return [(n.name, n.op, n.inputs, n.shape, n.args, n.note) for n in g]


# ---------------------------------------------------------------------- whole specs
@SETTINGS
@given(spec_texts())
def test_generated_specs_validate(spec: tuple[str, tuple[int, ...]]) -> None:
    text, expected = spec
    g = netspec.loads(text)
    assert g.output_shape == expected
    seen: set[str] = set()
    for node in g:
        assert node.name not in seen
        assert all(i in seen for i in node.inputs), f"{node.name} uses a later node"
        assert node.shape and all(d >= 1 for d in node.shape), (node.name, node.shape)
        seen.add(node.name)
    c = g.params()
    assert c.params == sum(prod(s) for s in g.param_shapes().values())
    assert c.buffers == sum(prod(s) for s in g.buffer_shapes().values())
    assert g.task == ("classification" if len(expected) == 1 else "segmentation")


@SETTINGS
@given(spec_texts())
def test_loading_twice_gives_the_same_graph(spec: tuple[str, tuple[int, ...]]) -> None:
    text, _ = spec
    a, b = netspec.loads(text), netspec.loads(text)
    assert _summary(a) == _summary(b)
    assert a.output == b.output and a.scopes == b.scopes and a.vars == b.vars


@SETTINGS
@given(spec_texts())
def test_yaml_layout_does_not_change_the_graph(spec: tuple[str, tuple[int, ...]]) -> None:
    """Block style, flow style: the same document, the same graph (positions aside)."""
    text, _ = spec
    data = yaml.safe_load(text)
    a = netspec.loads(text)
    for style in (False, True):
        b = netspec.loads(yaml.safe_dump(data, sort_keys=False, default_flow_style=style))
        assert [(n.name, n.op, n.inputs, n.shape, n.args) for n in a] == \
            [(n.name, n.op, n.inputs, n.shape, n.args) for n in b]


@SETTINGS
@given(spec_texts())
def test_report_rows_add_up_at_every_depth(spec: tuple[str, tuple[int, ...]]) -> None:
    from netspec.report import rows

    g = netspec.loads(spec[0])
    c = g.params()
    for depth in (None, 0, 1, 2):
        table = rows(g, depth)
        assert sum(r.params for r in table) == c.params
        assert sum(r.buffers for r in table) == c.buffers
        assert sum(r.macs for r in table) == c.macs
        names = [r.name for r in table]
        assert len(names) == len(set(names))
        if depth is not None:
            assert all(r.name.count(".") <= depth for r in table)


@pytest.fixture(scope="module")
def torch_backend() -> Any:
    if importlib.util.find_spec("netspec.backends.torch") is None:
        pytest.skip("netspec/backends/torch is not there yet")
    return importlib.import_module("netspec.backends.torch")


@FEW
@given(spec=spec_texts())
def test_whole_spec_matches_the_torch_backend(torch_backend: Any,
                                              spec: tuple[str, tuple[int, ...]]) -> None:
    from torch.fx.passes.shape_prop import ShapeProp

    text, expected = spec
    g = netspec.loads(text)
    model = netspec.build(g)
    model.eval()
    x = torch.randn(2, *g.input_shape)
    with torch.no_grad():
        ShapeProp(model).propagate(x)
        out = model(x)
    assert tuple(out.shape) == (2, *expected)
    checked = set()
    for fx_node in model.graph.nodes:
        if fx_node.op == "call_module":
            assert fx_node.target in g.nodes, f"module {fx_node.target} is no Graph node"
            meta = fx_node.meta["tensor_meta"]
            assert tuple(meta.shape) == (2, *g[fx_node.target].shape), fx_node.target
            checked.add(fx_node.target)
    owners = {n.name for n in g.layers if n.args.param_shapes(g.input_shapes(n))}
    assert owners <= checked
    params = {k: tuple(v.shape) for k, v in model.named_parameters()}
    assert params == {k: tuple(v) for k, v in g.param_shapes().items()}
    assert sum(p.numel() for p in model.parameters()) == g.params().params
    buffers = [b for k, b in model.named_buffers() if not k.endswith("num_batches_tracked")]
    assert sum(b.numel() for b in buffers) == g.params().buffers


# ---------------------------------------------------------------------- single layers
@SETTINGS
@given(single_layer_specs())
def test_single_layer_matches_torch(layer: SingleLayer) -> None:
    g = netspec.loads(layer.text)
    node = g.layers[-1]
    assert len(g.layers) == 1 + layer.tokens_first
    assert g.input_shapes(node)[0] == layer.input_shape
    ref = reference_module(layer).eval()
    x = torch.randn(2, *layer.input_shape)
    with torch.no_grad():
        y = ref(x)
    assert node.shape == tuple(y.shape[1:]), (layer.kind, layer.options)
    assert g.params().params == sum(p.numel() for p in ref.parameters())
    assert _local(g.param_shapes(), node.name + ".") == _local(
        {k: tuple(p.shape) for k, p in ref.named_parameters()})
    buffers = {k: tuple(b.shape) for k, b in ref.named_buffers()
               if not k.endswith("num_batches_tracked")}
    assert _local(g.buffer_shapes()) == _local(buffers)


def textbook_params(layer: SingleLayer, out_shape: tuple[int, ...]) -> tuple[int, int]:
    """(parameters, buffers) by the textbook formulas."""
    o, shape = layer.options, layer.input_shape
    c = shape[1] if len(shape) == 2 else shape[0]  # tokens: each token's D features
    if layer.kind in ("conv", "conv_transpose"):
        kh, kw = _p(o["k"])
        g, bias = o.get("groups", 1), o.get("bias", True)
        if layer.kind == "conv":
            return kh * kw * (c // g) * o["out"] + o["out"] * bias, 0
        return kh * kw * c * (o["out"] // g) + o["out"] * bias, 0
    if layer.kind == "linear":
        return c * o["out"] + o["out"] * o.get("bias", True), 0
    nk, affine = o["kind"], o.get("affine", True)
    if nk == "batch":
        return 2 * c * affine, 2 * c
    if nk == "layer":
        mode = {True: "channel", False: "none"}.get(affine, affine)
        if len(shape) == 2:
            return {"channel": 2 * c, "none": 0}[mode], 0
        return {"channel": 2 * c, "element": 2 * prod(shape), "none": 0}[mode], 0
    if nk in ("instance", "group"):
        return 2 * c * affine, 0
    return c * affine, 0


@SETTINGS
@given(single_layer_specs(kinds=COUNTED))
def test_counts_follow_the_textbook_formulas(layer: SingleLayer) -> None:
    g = netspec.loads(layer.text)
    node = g.layers[-1]  # after the ``tokens`` that makes a token input
    params, buffers = textbook_params(layer, node.shape)
    counts = g.params()
    assert (counts.params, counts.buffers) == (params, buffers), layer.options
    shape = layer.input_shape
    c = shape[0]
    if layer.kind == "conv":
        kh, kw = _p(layer.options["k"])
        assert counts.macs == prod(node.shape) * (c // layer.options.get("groups", 1)) * kh * kw
    if layer.kind == "linear":  # per token on tokens
        n, c = (shape[0], shape[1]) if len(shape) == 2 else (1, c)
        assert counts.macs == n * c * layer.options["out"]
    formula = node.args.formula(g.input_shapes(node))
    if formula is not None:
        # the report's formula column, evaluated, is the count it stands beside
        py = formula.replace("·", "*").replace("²", "**2")
        assert re.fullmatch(r"[\d*+/() ]+", py), formula  # digits and operators only
        assert eval(py) == params, formula
