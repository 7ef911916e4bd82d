"""specs/vit_b_16.yaml is torchvision's vit_b_16, checked against the hand-written
reference in tests/reference_nets_vit.py (torch's own nn.MultiheadAttention, LayerNorm,
GELU, Linear and Conv2d, with torchvision's names and order): the count the CLI prints,
the tensors pairing by position, the outputs with the reference's weights in eval and in
train mode, the initialisation of the class token and the position table, and the ONNX
export. Small variants go through the spec's vars, so every size the vars reach is the
reference's network at that size, not only the one bundled.

tests/with_torchvision/test_vit_torchvision.py checks the same against torchvision itself,
and the timm examples (examples/vit_tiny_timm.yaml, convnext_atto_timm.yaml) against timm.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_nets_vit import TORCHVISION_PARAMS, VisionTransformer, vit_b_16
from zoo import TOKEN_REFERENCES, randomize

import netspec
from netspec.backends.onnx import opset as onnx_opsets
from netspec.backends.onnx.export import export_onnx
from netspec.cli import main

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "vit_b_16.yaml"

#: torchvision's ViTs as the spec's vars (the spec's header says how): their published
#: parameter totals (torchvision's model docs, 1000 classes), written out here
VARIANTS: dict[str, tuple[dict[str, int], int]] = {
    "vit_b_16": ({}, 86_567_656),
    "vit_b_32": ({"patch": 32}, 88_224_232),
    "vit_l_16": ({"dim": 1024, "depth": 24, "heads": 16, "mlp": 4096}, 304_326_632),
    "vit_l_32": ({"patch": 32, "dim": 1024, "depth": 24, "heads": 16, "mlp": 4096},
                 306_535_400),
    "vit_h_14": ({"patch": 14, "dim": 1280, "depth": 32, "heads": 16, "mlp": 5120},
                 632_045_800),
}
#: a small ViT: 4 patches of 8×8 and a class token, 2 blocks of 3 heads of 4
SMALL: dict[str, Any] = {"image": 16, "patch": 8, "dim": 12, "depth": 2, "heads": 3,
                         "mlp": 20, "classes": 5}
#: the timm examples and timm 1.0.31's sum of numel for vit_tiny_patch16_224 and
#: convnext_atto (tests/with_torchvision/test_vit_torchvision.py compares with timm itself)
TIMM_EXAMPLES = {"vit_tiny_timm": 5_717_416, "convnext_atto_timm": 3_695_520}


# ----------------------------------------------------------------------------- helpers
def reference_for(vars: dict[str, Any], seed: int = 0) -> VisionTransformer:
    """The reference at the spec's vars, every tensor that starts at a constant drawn
    afresh (the others keep their random initialisation): LayerNorm γ/δ and the biases,
    the class token (zeros: it would not show where it goes) and the head (torchvision
    starts it at zero: the outputs would not depend on the input)."""
    kw = dict(vars)
    classes = kw.pop("classes", 1000)
    torch.manual_seed(seed)
    ref = vit_b_16(classes, **kw)
    randomize(ref, seed)  # every 1-D tensor: LayerNorm γ/δ and the biases
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        ref.class_token.copy_(torch.randn(ref.class_token.shape, generator=gen))
        head = ref.heads.head.weight
        head.copy_(torch.randn(head.shape, generator=gen) / head.shape[1] ** 0.5)
    return ref


def paired(ref: torch.nn.Module, ours: torch.nn.Module) -> None:
    """Copy the reference's tensors into ours by position (shapes checked), as a
    torchvision state_dict loads by position."""
    theirs, mine = ref.state_dict(), ours.state_dict()
    assert len(theirs) == len(mine)
    with torch.no_grad():
        for (tk, tv), (mk, mv) in zip(theirs.items(), mine.items(), strict=True):
            assert tv.shape == mv.shape, (tk, mk)
            mv.copy_(tv)


def built(vars: dict[str, Any]) -> tuple[VisionTransformer, torch.nn.Module]:
    """The reference (weights drawn) and the spec built at ``vars``, holding its weights."""
    ref = reference_for(vars)
    ours = netspec.build(netspec.load(SPEC, **vars))
    paired(ref, ours)
    return ref, ours


def images(vars: dict[str, Any], batch: int, seed: int = 2) -> torch.Tensor:
    size = vars.get("image", 224)
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def same_outputs(ref: torch.nn.Module, ours: torch.nn.Module, x: torch.Tensor,
                 train: bool) -> None:
    ref.train(train)
    ours.train(train)
    with torch.no_grad():
        want, got = ref(x), ours(x)
    # the comparison means something: the outputs depend on the image
    assert len(x) == 1 or float((want - want[:1]).abs().max()) > 1e-3
    torch.testing.assert_close(got, want)


def cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


# ------------------------------------------------------------------------------ counts
def test_the_reference_is_registered_beside_the_zoo() -> None:
    assert TOKEN_REFERENCES["vit_b_16"] is vit_b_16


@pytest.mark.parametrize("name", list(VARIANTS))
def test_the_cli_prints_torchvisions_count(name: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    vars, published = VARIANTS[name]
    sets = [a for k, v in vars.items() for a in ("--set", f"{k}={v}")]
    code, out, err = cli(capsys, "params", SPEC, *sets)
    assert code == 0, err
    line = next(s for s in out.splitlines() if s.startswith("parameters"))
    assert re.match(rf"parameters\s+{published:,}\s", line), line


@pytest.mark.parametrize("name", list(VARIANTS))
def test_the_graphs_count_is_the_references(name: str) -> None:
    vars, published = VARIANTS[name]
    with torch.device("meta"):  # shapes only: ViT-H/14 holds 632 M parameters
        ref = vit_b_16(**vars)
    total = sum(p.numel() for p in ref.parameters())
    assert netspec.load(SPEC, **vars).params().params == total == published


def test_the_published_count_is_written_in_the_reference() -> None:
    assert TORCHVISION_PARAMS["vit_b_16"] == VARIANTS["vit_b_16"][1]


# ---------------------------------------------------------------------- tensor pairing
def test_tensors_pair_by_position_with_other_names() -> None:
    with torch.device("meta"):
        ref = vit_b_16()
        ours = netspec.build(SPEC, device="meta")
    theirs, mine = ref.state_dict(), ours.state_dict()
    assert len(theirs) == len(mine) == 4 + 12 * 12 + 4
    for i, ((tk, tv), (mk, mv)) in enumerate(zip(theirs.items(), mine.items(), strict=True)):
        assert tv.shape == mv.shape, f"tensor {i}: {tk} {tuple(tv.shape)}, {mk} {tuple(mv.shape)}"
    # torchvision's own parameters lead: the class token, then the patchify conv, then
    # the encoder's position table before its blocks
    assert list(theirs)[:4] == ["class_token", "conv_proj.weight", "conv_proj.bias",
                                "encoder.pos_embedding"]
    assert list(mine)[:4] == ["cls1.token", "conv1.weight", "conv1.bias", "pos1.weight"]
    assert list(theirs)[4:10] == [f"encoder.layers.encoder_layer_0.{k}" for k in (
        "ln_1.weight", "ln_1.bias", "self_attention.in_proj_weight",
        "self_attention.in_proj_bias", "self_attention.out_proj.weight",
        "self_attention.out_proj.bias")]
    assert list(mine)[4:10] == [f"encoder.0.{k}" for k in (
        "ln_1.weight", "ln_1.bias", "attn1.qkv.weight", "attn1.qkv.bias", "attn1.proj.weight",
        "attn1.proj.bias")]
    assert set(theirs).isdisjoint(mine)  # the names differ: the pairing is by position


# -------------------------------------------------------------------------- outputs
@pytest.mark.slow
def test_vit_b_16_computes_the_references_outputs_in_eval_and_train(
        torch_one_thread: None) -> None:
    """The full network at batch 2: one forward each in eval mode and in train mode
    (dropout 0, so train mode computes the same but through MultiheadAttention's slow
    path, where eval takes its fused one)."""
    ref, ours = built({})
    x = images({}, 2)
    same_outputs(ref, ours, x, train=False)
    same_outputs(ref, ours, x, train=True)


@st.composite
def small_vits(draw: st.DrawFn) -> dict[str, Any]:
    heads = draw(st.integers(1, 3))
    patch = draw(st.sampled_from([2, 4, 8]))
    return {"heads": heads,
            # 4 or more features: a LayerNorm over 2 leaves each token only ±γ + δ
            "dim": heads * draw(st.sampled_from([4, 8])),
            "depth": draw(st.integers(1, 2)),
            "mlp": draw(st.integers(1, 24)),
            "patch": patch,
            "image": patch * draw(st.integers(1, 3)),   # 1 to 9 patches
            "classes": draw(st.integers(2, 7))}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vars=small_vits(), dropout=st.sampled_from([0.0, 0.3]))
def test_small_variants_compute_the_references_outputs(vars: dict[str, Any],
                                                       dropout: float) -> None:
    """Any size the vars reach is the reference's network at that size. With dropout
    the eval outputs still agree (the dropouts are identities there); without, the
    train-mode ones too."""
    vars = {**vars, "dropout": dropout, "attention_dropout": dropout}
    ref, ours = built(vars)
    x = images(vars, 3)
    same_outputs(ref, ours, x, train=False)
    if dropout == 0:
        same_outputs(ref, ours, x, train=True)


def test_train_mode_gradients_reach_the_same_tensors() -> None:
    """Backward through the small variant: every tensor's gradient is the reference's,
    the class token's and the position table's included."""
    ref, ours = built(SMALL)
    x = images(SMALL, 2)
    ref.train()
    ours.train()
    ref(x).square().sum().backward()
    ours(x).square().sum().backward()
    for (tk, tp), (mk, mp) in zip(ref.named_parameters(), ours.named_parameters(),
                                  strict=True):
        assert tp.grad is not None and mp.grad is not None, (tk, mk)
        torch.testing.assert_close(mp.grad, tp.grad, rtol=1e-4, atol=1e-6, msg=f"{tk} {mk}")


# ------------------------------------------------------------------- initialisation
def test_class_token_starts_at_zero_and_pos_embed_at_std_002() -> None:
    """As torchvision draws them: torch.zeros(1, 1, D) and normal_(std=0.02)."""
    torch.manual_seed(0)
    model = netspec.build(SPEC)
    token = model.get_parameter("cls1.token")
    table = model.get_parameter("pos1.weight")
    assert token.shape == (1, 1, 768) and not token.any()
    assert table.shape == (1, 197, 768)
    # 151,296 draws: the sample std is within 1% of 0.02 with overwhelming probability
    with torch.no_grad():
        assert abs(float(table.std()) - 0.02) < 2e-4
        assert abs(float(table.mean())) < 2e-4
    torch.manual_seed(1)
    again = netspec.build(SPEC).get_parameter("pos1.weight")
    assert not torch.equal(table, again)  # drawn, not a constant


# ------------------------------------------------------------------------------ ONNX
def export_small(opset: int, precision: str = "fp32", **vars: Any
                 ) -> tuple[Any, Any, VisionTransformer, dict[str, Any]]:
    spec_vars = {**SMALL, **vars}
    ref, ours = built(spec_vars)
    weights = {k: v.detach().numpy().copy() for k, v in ours.state_dict().items()}
    model, report = export_onnx(netspec.load(SPEC, **spec_vars), weights, opset=opset,
                                precision=precision)
    return model, report, ref.eval(), spec_vars


def onnx_outputs(model: Any, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"input": x.numpy()})
    return np.asarray(y)


@pytest.mark.parametrize("opset", [11, 17, 20, 23])
def test_a_small_variant_exports_at_every_opset(opset: int) -> None:
    """Verified in onnxruntime by export itself, and compared here with the reference
    (not netspec's torch module); dropout (0.3, of both kinds) leaves no node."""
    model, report, ref, vars = export_small(opset, dropout=0.3, attention_dropout=0.3)
    assert report.opset == opset
    assert report.verification is not None and report.verification.ok, report.verification
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"BatchNormalization", "Dropout"}, ops
    # ONNX's own Attention from its opset on, else spelled out as MatMul, Softmax, MatMul
    if opset >= onnx_opsets.ATTENTION_OPSET:
        assert "Attention" in ops and "Softmax" not in ops, ops
    else:
        assert {"MatMul", "Softmax"} <= ops and "Attention" not in ops, ops
    x = images(vars, 3)
    with torch.no_grad():
        want = ref(x).numpy()
    np.testing.assert_allclose(onnx_outputs(model, x), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("opset", [17, 23])  # spelled out, and ONNX's Attention
def test_a_small_variant_exports_at_fp16(opset: int) -> None:
    model, report, ref, vars = export_small(opset, precision="fp16")
    assert report.precision == "fp16"
    assert report.verification is not None and report.verification.ok, report.verification
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"BatchNormalization", "Dropout"}, ops
    x = images(vars, 3)
    with torch.no_grad():
        want = ref(x).numpy()
    got = onnx_outputs(model, x)
    assert got.dtype == np.float32  # fp32 at the edges, fp16 inside
    scale = max(1.0, float(np.abs(want).max()))
    assert float(np.abs(got - want).max()) / scale < 1e-2


def test_dynamic_size_is_refused_at_the_position_table(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = SPEC.read_text().splitlines()
    (row,) = [i for i, s in enumerate(lines) if s.strip() == "- pos_embed"]
    where = f"{SPEC}:{row + 1}:{lines[row].index('pos_embed') + 1}:"
    out = tmp_path / "vit.onnx"
    code, _, err = cli(capsys, "export", SPEC, "--dynamic-size", "-o", out)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"{where} --dynamic-size: pos_embed"), err
    assert "197 positions" in err
    assert not out.exists()


# ----------------------------------------------------------------- the timm examples
@pytest.mark.parametrize("name", list(TIMM_EXAMPLES))
def test_a_timm_example_runs_its_usage_line_and_counts_as_timm(
        name: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = ROOT / "examples" / f"{name}.yaml"
    first = path.read_text().splitlines()[0]
    usage = re.search(r"\bnetspec (\w+) (examples/\S+\.yaml)$", first)
    assert first.startswith("# ") and usage, first
    assert usage.group(2) == f"examples/{name}.yaml"
    code, out, err = cli(capsys, usage.group(1), ROOT / usage.group(2))
    assert code == 0, err
    line = next(s for s in out.splitlines() if s.startswith("parameters"))
    assert re.match(rf"parameters\s+{TIMM_EXAMPLES[name]:,}\s", line), line


def test_the_timm_vit_registers_its_tables_before_the_patch_conv() -> None:
    """timm holds cls_token and pos_embed as the model's own parameters, so they come
    before patch_embed.proj in its state_dict: register_before puts them there."""
    graph = netspec.load(ROOT / "examples" / "vit_tiny_timm.yaml")
    assert list(graph.param_shapes())[:4] == [
        "cls_token.token", "pos_embed.weight", "patch_embed.weight", "patch_embed.bias"]
    # computed in the order written: the conv, its tokens, the class token, the table
    assert [n.op for n in graph.layers][:4] == ["conv", "tokens", "class_token",
                                                 "pos_embed"]
