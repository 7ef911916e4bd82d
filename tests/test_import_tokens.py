"""``netspec import`` of token networks: transformers' [N, D] tokens, class tokens,
position embeddings and multi-head self-attention, back to specs proven equal, or refused
in one line.

The sources are small modules written as torchvision's and timm's ViT write them
(nn.MultiheadAttention, ``class_token.expand(n, -1, -1)`` and ``torch.cat``, ``x +
pos_embedding``, ``x[:, 0]``, timm's fused ``qkv``), netspec's own built models, and ONNX
files netspec exported. The references are independent of the import: the source module's
forward (or onnxruntime running the file) and its ``sum(p.numel())``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn
from zoo import randomize

import netspec
from netspec.backends.onnx.read import import_onnx
from netspec.backends.torch.sources import compare_with_torch
from netspec.backends.torch.trace import flatten_module
from netspec.importer.flat import Unmappable
from netspec.importer.pipeline import Imported, spec_from_flat

ROOT = Path(__file__).resolve().parents[1]


def _randomize(module: nn.Module) -> None:
    """zoo.randomize (1-D tensors), and the class tokens and position tables too: a
    class token left at its zeros would hide a token read from the wrong place."""
    torch.manual_seed(0)
    randomize(module)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for t in module.parameters():
            if t.dim() == 3:
                t.copy_(torch.randn(t.shape, generator=gen) * 0.5)


def _round_trip(module: nn.Module, shape: tuple[int, ...]) -> Imported:
    """Import as the command does, and check the spec against the module: its outputs,
    its count, and the text resolved again as any spec file is."""
    module.eval()
    _randomize(module)
    net = flatten_module(module, "net", "test", shape)
    imported = spec_from_flat(net, ["test"], "net.yaml")
    agreement = compare_with_torch(module, imported.graph, imported.weights)
    assert agreement.ok and agreement.ref_max > 0, (agreement, imported.text)
    again = netspec.loads(imported.text)
    assert again.params().params == sum(p.numel() for p in module.parameters())
    return imported


def _ops(imported: Imported) -> list[str]:
    return [n.op for n in imported.graph.layers]


def _netspec(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "netspec", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


# ---------------------------------------------------------------------------- torchvision's
class EncoderBlock(nn.Module):
    """torchvision's ViT EncoderBlock, as it is written there."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(d, heads, batch_first=True)
        self.dropout = nn.Dropout(0.0)
        self.ln_2 = nn.LayerNorm(d, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Dropout(0.0),
                                 nn.Linear(2 * d, d), nn.Dropout(0.0))

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        torch._assert(input.dim() == 3, "expected (batch, tokens, features)")
        x = self.ln_1(input)
        x, _ = self.self_attention(x, x, x, need_weights=False)
        x = self.dropout(x)
        x = x + input
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    def __init__(self, n: int, d: int, heads: int, depth: int) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, n, d).normal_(std=0.02))
        self.dropout = nn.Dropout(0.0)
        self.layers = nn.Sequential(*[EncoderBlock(d, heads) for _ in range(depth)])
        self.ln = nn.LayerNorm(d, eps=1e-6)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        input = input + self.pos_embedding
        return self.ln(self.layers(self.dropout(input)))


class TinyViT(nn.Module):
    """torchvision's VisionTransformer at toy sizes: its _process_input (shape asserts,
    reshape and permute), class token expanded and concatenated, ``x[:, 0]``."""

    def __init__(self, image: int = 16, patch: int = 4, d: int = 16, heads: int = 2,
                 depth: int = 2, classes: int = 5) -> None:
        super().__init__()
        self.image, self.patch, self.d = image, patch, d
        self.conv_proj = nn.Conv2d(3, d, patch, patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, d))
        self.encoder = Encoder((image // patch) ** 2 + 1, d, heads, depth)
        self.heads = nn.Sequential(nn.Linear(d, classes))

    def _process_input(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        torch._assert(h == self.image, "wrong image height")
        torch._assert(w == self.image, "wrong image width")
        x = self.conv_proj(x)
        x = x.reshape(n, self.d, (h // self.patch) * (w // self.patch))
        return x.permute(0, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._process_input(x)
        n = x.shape[0]
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        x = self.encoder(x)
        return self.heads(x[:, 0])


def test_a_torchvision_vit_imports_with_its_token_kinds() -> None:
    imported = _round_trip(TinyViT(), (3, 16, 16))
    ops = _ops(imported)
    assert ops[:5] == ["conv", "tokens", "class_token", "pos_embed", "dropout"], ops
    assert ops.count("attention") == 2 and ops[-2:] == ["select", "linear"]
    text = imported.text
    assert "class_token: {register_first: true" in text  # a parameter of the model itself
    assert "- attention: 2" in text and "- select: 0" in text
    assert "repeat: 2" in text  # the encoder blocks, one block
    assert imported.by_position  # torchvision's state_dict pairs by position


class _MhaWeightsUnused(nn.Module):
    """nn.MultiheadAttention with need_weights left at True: the weights are computed and
    dropped, the output is the same."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 2, 2)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True, bias=False, dropout=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x).flatten(2).transpose(1, 2)
        return self.attn(x, x, x)[0].mean(dim=1)


def test_multihead_attention_whose_weights_go_unused() -> None:
    imported = _round_trip(_MhaWeightsUnused(), (3, 8, 8))
    assert _ops(imported) == ["conv", "tokens", "attention", "select"]
    assert "attention: {heads: 2, qkv_bias: false, out_bias: false, drop: 0.1" in \
        imported.text
    assert "select: mean" in imported.text


# ---------------------------------------------------------------------------- timm's
class Attention(nn.Module):
    """timm.layers.attention.Attention as timm writes it (fused qkv, q/k norms that are
    Identity, its forward's attn_mask), known here by its bare name."""

    def __init__(self, dim: int, num_heads: int = 2, qkv_bias: bool = False,
                 attn_drop: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.q_norm, self.k_norm = nn.Identity(), nn.Identity()
        self.attn_drop = nn.Dropout(attn_drop)
        self.norm = nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(0.0)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        if attn_mask is not None:
            attn = attn + attn_mask
        x = self.attn_drop(attn.softmax(dim=-1)) @ v
        x = self.norm(x.transpose(1, 2).reshape(b, n, c))
        return self.proj_drop(self.proj(x))


class LayerScale(nn.Module):
    """timm's LayerScale: γ [D] on tokens."""

    def __init__(self, dim: int, init_values: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, qkv_bias=True, attn_drop=0.1)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), attn_mask=attn_mask))
        return x + self.mlp(self.norm2(x))


class TimmViT(nn.Module):
    """timm's VisionTransformer's order: class token and position table are parameters
    of the model, the patches flattened by ``flatten(2).transpose(1, 2)``, the tokens
    averaged (global_pool='avg' without prefix tokens)."""

    def __init__(self, dim: int = 12) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, 4, 4)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 17, dim) * 0.02)
        self.blocks = nn.Sequential(Block(dim), Block(dim))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x.mean(dim=1))


def test_a_timm_vit_imports_with_its_fused_qkv_and_layer_scale() -> None:
    imported = _round_trip(TimmViT(), (3, 16, 16))
    ops = _ops(imported)
    assert Counter(ops)["attention"] == 2 and Counter(ops)["layer_scale"] == 2
    assert ops[:4] == ["conv", "tokens", "class_token", "pos_embed"]
    assert "attention: {heads: 2, drop: 0.1" in imported.text
    assert "select: mean" in imported.text


class _MyAttention(nn.Module):
    """A user's own class that wraps torch's MultiheadAttention."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(d, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mha(x, x, x, need_weights=False)[0]


_MyAttention.__name__ = _MyAttention.__qualname__ = "Attention"


class _Wrapped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 2, 2)
        self.attn = _MyAttention(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(self.stem(x).flatten(2).transpose(1, 2))[:, -1]


def test_a_class_named_attention_that_is_not_timms_is_traced_through() -> None:
    """timm's Attention is known by its bare name; a user's ``Attention`` without its
    qkv and proj is not that kind, so the tracer reads what it calls."""
    imported = _round_trip(_Wrapped(), (3, 8, 8))
    assert _ops(imported) == ["conv", "tokens", "attention", "select"]
    assert "select: 15" in imported.text  # x[:, -1] of 16 tokens


# ---------------------------------------------------------------------------- spellings
class _Spellings(nn.Module):
    """Tokens and back to a map as code spells them: flatten and transpose, a
    channels-last permute and reshape, transpose and reshape; ConvNeXt's 1-D γ viewed
    [1, C, 1, 1] (timm's ``x.mul(gamma.reshape(1, -1, 1, 1))``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.gamma = nn.Parameter(torch.full((6,), 0.5))
        self.fc = nn.Linear(6, 6)
        self.out = nn.Conv2d(6, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x).mul(self.gamma.reshape(1, -1, 1, 1))
        b, c, h, w = x.shape
        t = self.fc(x.permute(0, 2, 3, 1).reshape(b, h * w, c))
        y = t.transpose(1, 2).reshape(b, c, h, w)
        return self.out(y)


def test_tokens_and_maps_are_found_in_any_spelling() -> None:
    imported = _round_trip(_Spellings(), (3, 4, 4))
    assert _ops(imported) == ["conv", "layer_scale", "tokens", "linear", "map", "conv"]
    assert "layer_scale: {register_first: true, flat: true, as: gamma}" in imported.text
    assert "map: [4, 4]" in imported.text
    scale = next(n.name for n in imported.graph.layers if n.op == "layer_scale")
    assert imported.weights[f"{scale}.weight"].shape == (6,)  # timm's own shape


# ---------------------------------------------------------------------------- netspec's own
OWN = {
    "vit": """netspec: 1
name: vit
input: [3, 8, 8]
layers:
  - conv: {out: 8, k: 2, stride: 2, pad: 0}
  - tokens
  - class_token: {std: 1.0e-6}
  - pos_embed: {std: 0.1}
  - residual:
      body:
        - norm: layer
        - attention: {heads: 2, key_dim: 1, drop: 0.1}
        - layer_scale: 0.1
        - drop_path: {drop: 0.1}
  - residual:
      body:
        - norm: layer
        - linear: {out: 16}
        - gelu
        - dropout: {drop: 0.1}
        - linear: {out: 8, bias: false}
  - select: mean
  - linear: {out: 5}
""",
    "map attention": """netspec: 1
name: mapattn
input: [4, 6, 6]
layers:
  - conv: {out: 8, k: 3}
  - attention: {heads: 2, head_dim: 3, qkv_bias: false, out_bias: false}
  - layer_scale: {flat: true, init: 0.5}
  - relu
  - tokens
  - map: [6, 6]
  - conv: {out: 4, k: 1}
""",
    "without projections": """netspec: 1
name: noproj
input: [3, 4, 4]
layers:
  - conv: {out: 12, k: 1}
  - attention: {heads: 2, project: false}
  - conv: {out: 16, k: 1}
  - tokens
  - attention: {heads: 2, key_dim: 2, project: false, layout: heads, drop: 0.1}
  - attention: {heads: 2, layout: heads}
  - select: mean
""",
    "two selects": """netspec: 1
name: two
input: [4, 4, 4]
layers:
  - tokens
  - attention: {heads: 1, as: at}
  - layer_scale
  - select: {token: -2, as: first}
  - select: {token: mean, input: at, as: avg}
outputs: [first, avg]
""",
}


@pytest.mark.parametrize("name", OWN)
def test_a_built_token_model_imports_back(name: str) -> None:
    """netspec's own modules (backends/torch/tokens.py) read back as their kinds."""
    g = netspec.loads(OWN[name])
    torch.manual_seed(0)
    model = netspec.build(g)
    imported = _round_trip(model, g.input_shape)
    assert Counter(_ops(imported)) == Counter(n.op for n in g.layers)
    assert imported.graph.output_shapes == g.output_shapes


# ---------------------------------------------------------------------------- ONNX
TOKENS_ONNX = """netspec: 1
name: tok
input: [3, 8, 8]
layers:
  - conv: {out: 8, k: 2, stride: 2, pad: 0}
  - tokens
  - pos_embed
  - norm: layer
  - gelu
  - layer_scale: {init: 0.5, as: scaled}
  - linear: {out: 8}
  - map: [4, 4]
  - conv: {out: 6, k: 3}
  - tokens
  - select: {token: -1, as: last}
  - linear: {out: 5, as: fc}
  - select: {token: mean, input: scaled, as: avg}
outputs: [fc, avg]
"""


def _export(text: str, path: Path, opset: int = 17) -> None:
    g = netspec.loads(text)
    torch.manual_seed(0)
    model = netspec.build(g)
    _randomize(model)
    proto, _ = netspec.export_onnx(g, model.state_dict(), opset=opset, verify=False)
    onnx.save(proto, str(path))


@pytest.mark.parametrize("opset", [17, 20])
def test_netspecs_own_onnx_export_of_tokens_reads_back(tmp_path: Path, opset: int) -> None:
    """tokens (Reshape, Transpose), map (Transpose, Reshape), pos_embed (Add of a
    [1, N, D] initializer), layer norm on tokens, select (Gather, ReduceMean); GELU as
    one Gelu node from opset 20 (its ``approximate`` a string attribute, read as bytes).
    Before opset 17 a layer norm is a chain of ReduceMeans that no reader reads yet."""
    path = tmp_path / "tok.onnx"
    _export(TOKENS_ONNX, path, opset)
    imported, agreement = import_onnx(str(path), None, None, "tok.yaml",
                                      lambda origin, n: ["test"], 1e-4)
    assert agreement.ok and agreement.ref_max > 0, agreement
    ops = _ops(imported)
    # the linear on tokens: a MatMul and the Add of its bias, one per token's features
    assert ops == ["conv", "tokens", "pos_embed", "layernorm", "gelu", "layer_scale",
                   "linear", "map", "conv", "tokens", "select", "linear", "select"], ops
    assert "- select: -1\n" in imported.text and "select: {token: mean" in imported.text
    assert imported.graph.params().params == netspec.loads(TOKENS_ONNX).params().params


@pytest.mark.parametrize(("layer", "message"), [
    ("class_token", "cls1: Expand of constants has no netspec meaning"),
    ("attention: 2", "attn1: "),
])
def test_what_netspecs_onnx_reader_does_not_read_is_one_line(
        tmp_path: Path, layer: str, message: str) -> None:
    """class_token and attention have no ONNX reader (readers.py says why): the import
    stops at the first op it cannot read, in one line, exit 2."""
    text = f"""netspec: 1
name: x
input: [3, 8, 8]
layers:
  - conv: {{out: 8, k: 2, stride: 2, pad: 0}}
  - tokens
  - {layer}
  - select: 0
"""
    path = tmp_path / "x.onnx"
    _export(text, path)
    r = _netspec("import", str(path), "-o", str(tmp_path / "x.yaml"), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr
    assert "no netspec" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.yaml").exists()


# ---------------------------------------------------------------------------- refusals
def test_multihead_attention_with_other_key_sizes_is_refused_in_one_line(
        tmp_path: Path) -> None:
    (tmp_path / "mynets.py").write_text('''import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 2, 2)
        self.keys = nn.Linear(8, 4)
        self.attn = nn.MultiheadAttention(8, 2, kdim=4, vdim=4, batch_first=True)

    def forward(self, x):
        x = self.stem(x).flatten(2).transpose(1, 2)
        k = self.keys(x)
        return self.attn(x, k, k, need_weights=False)[0]


def make():
    return Net()
''')
    r = _netspec("import", "mynets:make", "-o", str(tmp_path / "o.yaml"), "--input", "3,8,8",
                 cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert ("attn: MultiheadAttention projects keys and values from other sizes (kdim=4, "
            "vdim=4, embed_dim=8), which netspec has no options for") in r.stderr
    assert not (tmp_path / "o.yaml").exists()


class _Mha(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.stem = nn.Conv2d(3, 8, 2, 2)
        self.other = nn.Linear(8, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=how != "batch second",
                                          add_bias_kv=how == "bias kv")
        self.register_buffer("mask", torch.zeros(16, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x).flatten(2).transpose(1, 2)
        if self.how == "cross":
            y = self.other(x)
            return self.attn(x, y, y)[0] + self.other(x)
        if self.how == "mask":
            return self.attn(x, x, x, attn_mask=self.mask)[0] + self.other(x)
        if self.how == "weights":
            out, weights = self.attn(x, x, x)
            return self.other(out) * weights.sum()
        return self.attn(x, x, x)[0] + self.other(x)


class _TimmNormed(nn.Module):
    def __init__(self, what: str) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 2, 2)
        self.attn = Attention(8)
        if what == "qk norm":
            self.attn.q_norm = nn.LayerNorm(4)
        else:
            self.attn.proj_drop = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(self.stem(x).flatten(2).transpose(1, 2))


class _Token(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.stem = nn.Conv2d(3, 8, 2, 2)
        self.token = nn.Parameter(torch.zeros(1, 1, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x).flatten(2).transpose(1, 2)
        if self.how == "after":
            return torch.cat([x, self.token.expand(x.shape[0], -1, -1)], dim=1)
        return torch.cat([self.token.expand(x.shape[0], 2, -1), x], dim=1)


REFUSALS = {
    "cross attention": (lambda: _Mha("cross"), "attn: MultiheadAttention attends from one "
                        "tensor to others (query, key and value are not one tensor)"),
    "batch second": (lambda: _Mha("batch second"), "reads [sequence, batch, features] "
                     "(batch_first=False"),
    "bias kv": (lambda: _Mha("bias kv"), "adds learned key and value biases (add_bias_kv)"),
    "a mask": (lambda: _Mha("mask"), "attn: MultiheadAttention masks the attention "
               "(attn_mask)"),
    "its weights used": (lambda: _Mha("weights"), "attn: the code uses its attention "
                         "weights (the second output), which netspec does not compute"),
    "q norm": (lambda: _TimmNormed("qk norm"), "attn: Attention normalises the queries "
               "(q_norm)"),
    "projection dropout": (lambda: _TimmNormed("proj drop"), "attn: Attention drops the "
                           "projection's output (proj_drop 0.1)"),
    "token after": (lambda: _Token("after"), "joins a parameter to the traced tensors"),
    "token expanded": (lambda: _Token("expanded"), "expands token from [1, 1, 8] to "
                       "[1, 2, 8]; netspec expands a parameter only to the batch"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_what_netspec_cannot_say_of_attention_is_refused(case: str) -> None:
    make, message = REFUSALS[case]
    with pytest.raises(Unmappable) as e:
        spec_from_flat(flatten_module(make().eval(), "net", "test", (3, 8, 8)), ["t"], "n.yaml")
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_a_refused_import_is_not_a_guess_for_a_map_attention() -> None:
    """nn.MultiheadAttention reads [B, N, D]: given a map's [B, C, H, W] it is refused,
    not read as netspec's attention over a map's positions."""

    class OnMap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(3, 1, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.attn(x, x, x)[0]

    with pytest.raises(Unmappable, match=r"attends over a 3-D \[3, 8, 8\] tensor"):
        flatten_module(OnMap().eval(), "net", "test", (3, 8, 8))


def test_the_written_weights_are_the_sources_values() -> None:
    """The class token, position table and qkv weight reach the spec's tensors unchanged
    (the tracer's expand at batch 1 is the parameter itself)."""
    source = TinyViT().eval()
    imported = _round_trip(source, (3, 16, 16))
    layer = {n.op: n.name for n in imported.graph.layers}
    w = imported.weights
    assert np.array_equal(w[f"{layer['class_token']}.token"],
                          source.class_token.detach().numpy())
    assert np.array_equal(w[f"{layer['pos_embed']}.weight"],
                          source.encoder.pos_embedding.detach().numpy())
    qkv = w[f"{layer['attention']}.qkv.weight"]  # the last block's
    assert np.array_equal(qkv, source.encoder.layers[1].self_attention.in_proj_weight
                          .detach().numpy())
