"""specs/swin_t.yaml is torchvision's swin_t, checked against the hand-written reference
in tests/reference_nets_swin.py (torch's own LayerNorm, Linear, Conv2d, GELU, roll and
pad, channels-last, with torchvision's names and order): the count the CLI prints (and
swin_s's, swin_b's through the vars), the tensors pairing by position (torchvision's
``relative_position_index`` buffers left out: netspec derives the index from the
window), the outputs with the reference's weights in eval and in train mode, the
gradients, and the ONNX export. Small variants go through the spec's vars.

The two kinds on their own: ``window_attention`` against an independent formula
(tests/test_properties.py's WindowAttentionRef: one attention over the whole padded map,
restricted to each position's shifted window, no roll, no windows cut out), shifted and
not, padded and not, and its MACs against torch's FLOP counter; ``patch_merge`` against
the slicing that defines it.

tests/with_torchvision/test_swin_torchvision.py checks the same against torchvision.
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
from reference_nets_swin import TORCHVISION_PARAMS, SwinTransformer, swin_t
from test_properties import WindowAttentionRef
from torch.utils.flop_counter import FlopCounterMode
from zoo import randomize

import netspec
from netspec.backends.onnx.export import export_onnx
from netspec.cli import main
from netspec.errors import NetspecError

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "swin_t.yaml"
INDEX = "relative_position_index"

#: torchvision's Swin V1 models as the spec's vars (the spec's header says how), with
#: their published parameter totals (torchvision's model docs, 1000 classes)
VARIANTS: dict[str, tuple[dict[str, int], int]] = {
    "swin_t": ({}, 28_288_354),
    "swin_s": ({"depth3": 18}, 49_606_258),
    "swin_b": ({"depth3": 18, "embed": 128, "heads": 4}, 87_768_224),
}
#: a small Swin: 32×32 images, 8×8 patches of 4×4, windows of 2 (so shifted in every
#: stage but the last, whose 1×1 map holds one window), 2 heads of 4 channels at first
SMALL: dict[str, Any] = {"image": 32, "embed": 8, "heads": 2, "window": 2, "depth1": 2,
                         "depth2": 1, "depth3": 2, "depth4": 1, "classes": 5}


# ----------------------------------------------------------------------------- helpers
def reference_for(vars: dict[str, Any], seed: int = 0) -> SwinTransformer:
    """The reference at the spec's vars, every tensor that starts at a constant drawn
    afresh (LayerNorm γ/δ and the biases; the bias tables, 0.02 at most, made larger so
    a misplaced bias shows)."""
    kw = dict(vars)
    torch.manual_seed(seed)
    ref = swin_t(kw.pop("classes", 1000), **kw)
    randomize(ref, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, t in ref.named_parameters():
            if name.endswith("relative_position_bias_table"):
                t.copy_(torch.randn(t.shape, generator=gen))
    return ref


def learned(ref: torch.nn.Module) -> dict[str, torch.Tensor]:
    """torchvision's state_dict without its relative position indices (the one tensor
    netspec does not hold: it follows from the window)."""
    return {k: v for k, v in ref.state_dict().items() if not k.endswith(INDEX)}


def paired(ref: torch.nn.Module, ours: torch.nn.Module) -> None:
    """Copy the reference's tensors into ours by position (shapes checked)."""
    theirs, mine = learned(ref), ours.state_dict()
    assert len(theirs) == len(mine)
    with torch.no_grad():
        for (tk, tv), (mk, mv) in zip(theirs.items(), mine.items(), strict=True):
            assert tv.shape == mv.shape, (tk, mk)
            mv.copy_(tv)


def built(vars: dict[str, Any]) -> tuple[SwinTransformer, torch.nn.Module]:
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


def single(layer: str, shape: tuple[int, int, int]) -> netspec.Graph:
    return netspec.loads(f"netspec: 1\nname: t\ninput: {list(shape)}\nlayers:\n  - {layer}\n")


# ------------------------------------------------------------------------------ counts
@pytest.mark.parametrize("name", list(VARIANTS))
def test_the_cli_prints_torchvisions_count(name: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    vars, published = VARIANTS[name]
    sets = [a for k, v in vars.items() for a in ("--set", f"{k}={v}")]
    code, out, err = cli(capsys, "params", SPEC, *sets)
    assert code == 0, err
    line = next(s for s in out.splitlines() if s.startswith("parameters"))
    assert re.match(rf"parameters\s+{published:,}\s", line), line
    assert re.search(r"^buffers\s+0$", out, re.M), out  # the indices are no tensors


@pytest.mark.parametrize("name", list(VARIANTS))
def test_the_graphs_count_is_the_references(name: str) -> None:
    vars, published = VARIANTS[name]
    with torch.device("meta"):
        ref = swin_t(**vars)
    total = sum(p.numel() for p in ref.parameters())
    assert netspec.load(SPEC, **vars).params().params == total == published
    assert TORCHVISION_PARAMS[name] == published


def test_macs_are_torchs_flop_count() -> None:
    """The spec's MACs are what torch's FLOP counter counts (2 per MAC: convolutions,
    linear maps and the attention's matmuls) on the reference, small and full size."""
    for vars in (SMALL, {}):
        with torch.device("meta"):
            ref = swin_t(vars.get("classes", 1000), **{k: v for k, v in vars.items()
                                                       if k != "classes"}).eval()
            counter = FlopCounterMode(display=False)
            with counter, torch.no_grad():
                ref(torch.empty(1, 3, vars.get("image", 224), vars.get("image", 224)))
        assert netspec.load(SPEC, **vars).params().macs * 2 == counter.get_total_flops()
    assert netspec.load(SPEC).params().macs == 4_490_566_656  # torchvision: 4.491 GFLOPS


# ---------------------------------------------------------------------- tensor pairing
def test_tensors_pair_by_position_with_other_names() -> None:
    with torch.device("meta"):
        ref = swin_t()
        ours = netspec.build(SPEC, device="meta")
    theirs, mine = learned(ref), ours.state_dict()
    # 12 blocks of 13 tensors, 3 mergings of 3, the stem's 4, the final norm and head's 4
    assert len(theirs) == len(mine) == 12 * 13 + 3 * 3 + 4 + 4
    for i, ((tk, tv), (mk, mv)) in enumerate(zip(theirs.items(), mine.items(), strict=True)):
        assert tv.shape == mv.shape, f"tensor {i}: {tk} {tuple(tv.shape)}, {mk} {tuple(mv.shape)}"
    # the attention's own table before its qkv and proj, as torchvision registers it
    block = [k.removeprefix("features.1.0.") for k in list(theirs)[4:17]]
    assert block == ["norm1.weight", "norm1.bias", "attn.relative_position_bias_table",
                     "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
                     "norm2.weight", "norm2.bias", "mlp.0.weight", "mlp.0.bias",
                     "mlp.3.weight", "mlp.3.bias"]
    assert [k.removeprefix("stage1.0.") for k in list(mine)[4:17]] == [
        "ln1.weight", "ln1.bias", "attn1.relative_position_bias_table", "attn1.qkv.weight",
        "attn1.qkv.bias", "attn1.proj.weight", "attn1.proj.bias", "ln2.weight", "ln2.bias",
        "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    # a patch merging's reduction before its norm, though the norm runs first
    assert list(theirs)[30:33] == ["features.2.reduction.weight", "features.2.norm.weight",
                                   "features.2.norm.bias"]
    assert list(mine)[30:33] == ["merge1.fc1.weight", "merge1.norm.weight",
                                 "merge1.norm.bias"]
    # the index is torchvision's one tensor more, once per block, and no netspec tensor
    assert sum(k.endswith(INDEX) for k in ref.state_dict()) == 12
    assert not any(INDEX in k for k in [*mine, *dict(ours.named_buffers())])
    # the names differ (the head's aside): the pairing is by position
    assert set(theirs) & set(mine) == {"head.weight", "head.bias"}


# -------------------------------------------------------------------------- outputs
def test_swin_t_computes_the_references_outputs(torch_one_thread: None) -> None:
    """The full network at 224, batch 1, in eval mode (stochastic depth off)."""
    ref, ours = built({})
    same_outputs(ref, ours, images({}, 1), train=False)


@st.composite
def small_swins(draw: st.DrawFn) -> dict[str, Any]:
    heads = draw(st.integers(1, 2))
    window = draw(st.integers(1, 3))
    return {"heads": heads,
            # 4 or more channels a head: a LayerNorm over 2 leaves only ±γ + δ
            "embed": heads * draw(st.sampled_from([4, 6])),
            "window": window,
            "depth1": draw(st.integers(1, 2)), "depth2": draw(st.integers(1, 2)),
            "depth3": draw(st.integers(1, 2)), "depth4": draw(st.integers(1, 2)),
            # 32 or 64: maps of 8 or 16 … 1 or 2; a window of 3 pads all of them
            "image": 32 * draw(st.integers(1, 2)),
            "classes": draw(st.integers(2, 7))}


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vars=small_swins(), dropout=st.sampled_from([0.0, 0.3]))
def test_small_variants_compute_the_references_outputs(vars: dict[str, Any],
                                                       dropout: float) -> None:
    """Any size the vars reach is the reference's network at that size: windows of 1
    to 3 (padded where they do not divide the map, shifted where the map holds more than
    one). With dropout the eval outputs still agree; without dropout or stochastic depth,
    the train-mode ones too."""
    vars = {**vars, "dropout": dropout, "attention_dropout": dropout}
    ref, ours = built(vars)
    x = images(vars, 3)
    same_outputs(ref, ours, x, train=False)
    if dropout == 0:
        ref, ours = built({**vars, "drop_path": 0.0})
        same_outputs(ref, ours, x, train=True)


def test_train_mode_gradients_reach_the_same_tensors() -> None:
    """Backward through the small variant (no stochastic depth): every tensor's gradient
    is the reference's, the bias tables' included."""
    vars = {**SMALL, "drop_path": 0.0}
    ref, ours = built(vars)
    x = images(vars, 2)
    ref.train()
    ours.train()
    ref(x).square().sum().backward()
    ours(x).square().sum().backward()
    for (tk, tp), (mk, mp) in zip(ref.named_parameters(), ours.named_parameters(),
                                  strict=True):
        assert tp.grad is not None and mp.grad is not None, (tk, mk)
        torch.testing.assert_close(mp.grad, tp.grad, rtol=1e-4, atol=1e-6, msg=f"{tk} {mk}")


def test_stochastic_depth_grows_linearly_over_the_blocks() -> None:
    """torchvision's sd_prob = 0.2 · block / (blocks − 1), the same in both residuals."""
    graph = netspec.load(SPEC)
    drops = [n.args.p_drop for n in graph.layers if n.op == "drop_path"]
    assert drops == pytest.approx([0.2 * b / 11 for b in range(12) for _ in (0, 1)])


# ------------------------------------------------------------- window attention alone
WINDOWS = [  # (options, input): unshifted, shifted, padded, one window along an axis
    ("{heads: 2, window: 3}", (4, 6, 6)),
    ("{heads: 2, window: 3, shift: 1}", (4, 6, 9)),
    ("{heads: 1, window: [2, 3], shift: [1, 2]}", (3, 6, 6)),
    ("{heads: 2, window: 4, shift: 2}", (4, 5, 7)),              # padded to 8×8
    ("{heads: 3, window: 3, shift: 1, qkv_bias: false}", (6, 2, 7)),  # one window tall
    ("{heads: 1, window: 4, shift: [0, 1], out_bias: false}", (2, 4, 8)),
    ("{heads: 2, window: 7, shift: 3}", (4, 4, 4)),              # one window: no shift
]


@pytest.mark.parametrize(("options", "shape"), WINDOWS)
def test_window_attention_is_the_formula(options: str, shape: tuple[int, int, int]) -> None:
    graph = single(f"window_attention: {options}", shape)
    torch.manual_seed(0)
    ours = netspec.build(graph).eval()
    node = graph.layers[-1]
    ref = WindowAttentionRef(node.args.model_dump(), shape).eval()
    mine = {k.removeprefix(f"{node.name}."): v for k, v in ours.state_dict().items()}
    assert set(mine) == {k for k, _ in ref.named_parameters()}
    with torch.no_grad():
        for k, p in ref.named_parameters():
            mine[k].copy_(p)  # the table drawn from N(0, 1): a misplaced bias shows
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x))


@pytest.mark.parametrize(("options", "shape"), WINDOWS)
def test_window_attention_macs_are_torchs_flop_count(options: str,
                                                     shape: tuple[int, int, int]) -> None:
    graph = single(f"window_attention: {options}", shape)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        netspec.build(graph).eval()(torch.randn(1, *shape))
    assert graph.params().macs * 2 == counter.get_total_flops()


def test_window_attention_starts_as_torchvisions() -> None:
    """The bias table drawn as torchvision draws it: trunc_normal_(std=0.02), whose
    bounds (torch's default, ±2) are absolute, 100 standard deviations out: a normal."""
    torch.manual_seed(0)
    model = netspec.build(SPEC)
    table = model.get_parameter("stage3.0.attn1.relative_position_bias_table")
    assert table.shape == (169, 12)
    with torch.no_grad():
        assert abs(float(table.std()) - 0.02) < 2e-3 and abs(float(table.mean())) < 2e-3
    torch.manual_seed(1)
    again = netspec.build(SPEC).get_parameter("stage3.0.attn1.relative_position_bias_table")
    assert not torch.equal(table, again)  # drawn, not a constant


def test_only_the_projections_weights_take_weight_decay() -> None:
    """Swin's bias table is a learned bias (timm's ``no_weight_decay`` lists it): of a
    window attention's tensors only qkv's and proj's weights decay."""
    model = netspec.build(SPEC)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {g["weight_decay"]: {names[id(p)] for p in g["params"]}
              for g in netspec.param_groups(model, 0.05)}
    attn = "stage3.0.attn1."
    decayed = {n.removeprefix(attn) for n in groups[0.05] if n.startswith(attn)}
    free = {n.removeprefix(attn) for n in groups[0.0] if n.startswith(attn)}
    assert decayed == {"qkv.weight", "proj.weight"}
    assert free == {"relative_position_bias_table", "qkv.bias", "proj.bias"}


def test_window_attention_options_are_checked() -> None:
    with pytest.raises(NetspecError, match="shift"):
        single("window_attention: {heads: 1, window: 3, shift: 3}", (4, 6, 6))
    with pytest.raises(NetspecError, match="heads=3 does not divide the 4 channels"):
        single("window_attention: 3", (4, 6, 6))
    with pytest.raises(NetspecError, match="takes a"):
        netspec.loads("netspec: 1\nname: t\ninput: [8]\nlayers:\n  - window_attention: 2\n")


# ----------------------------------------------------------------- patch merge alone
@pytest.mark.parametrize("shape", [(3, 2, 2), (4, 6, 8), (1, 10, 4)])
def test_patch_merge_is_the_slicing(shape: tuple[int, int, int]) -> None:
    graph = single("patch_merge", shape)
    c, h, w = shape
    assert graph.output_shape == (4 * c, h // 2, w // 2)
    x = torch.randn(2, *shape)
    want = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2],
                      x[:, :, 1::2, 1::2]], 1)
    assert torch.equal(netspec.build(graph)(x), want)
    # channel k·C + c of position (i, j) is x[c, 2i + k % 2, 2j + k // 2]
    got = netspec.build(graph)(x)
    for k in range(4):
        assert torch.equal(got[:, k * c:(k + 1) * c], x[:, :, k % 2::2, k // 2::2])


def test_patch_merge_refuses_an_odd_size() -> None:
    with pytest.raises(NetspecError, match="even height and width, got 6×5"):
        single("patch_merge", (4, 6, 5))


# ------------------------------------------------------------------------------ ONNX
@pytest.mark.parametrize("opset", [11, 17, 23])
def test_a_small_variant_exports_at_every_opset(opset: int) -> None:
    """Verified in onnxruntime by export itself, and compared here with the reference
    (not netspec's torch module); dropout (0.3, of both kinds) and stochastic depth
    leave no node, and no BatchNormalization or Pad either."""
    vars = {**SMALL, "dropout": 0.3, "attention_dropout": 0.3}
    ref, ours = built(vars)
    weights = {k: v.detach().numpy().copy() for k, v in ours.state_dict().items()}
    model, report = export_onnx(netspec.load(SPEC, **vars), weights, opset=opset)
    assert report.verification is not None and report.verification.ok, report.verification
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"BatchNormalization", "Dropout", "Pad", "Identity"}, ops
    x = images(vars, 3)
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        want = ref.eval()(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_a_small_variant_exports_at_fp16() -> None:
    """Half precision inside (the bias with its −100 mask one fp16 constant), verified
    by export against torch within its 1e-2."""
    _, ours = built(SMALL)
    weights = {k: v.detach().numpy().copy() for k, v in ours.state_dict().items()}
    _, report = export_onnx(netspec.load(SPEC, **SMALL), weights, precision="fp16")
    assert report.precision == "fp16"
    assert report.verification is not None and report.verification.ok, report.verification

def test_swin_t_exports_verified(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The bundled spec itself, through the CLI: export verifies it in onnxruntime
    against torch (batches of 1 and 2 at 224) and writes it."""
    out = tmp_path / "swin_t.onnx"
    code, _, err = cli(capsys, "export", SPEC, "-o", out)
    assert code == 0, err
    import onnx

    ops = {n.op_type for n in onnx.load(out, load_external_data=False).graph.node}
    assert not ops & {"BatchNormalization", "Dropout", "Pad", "Identity"}, ops


def test_dynamic_size_is_refused_at_the_first_window_attention(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = SPEC.read_text().splitlines()
    (row,) = [i for i, s in enumerate(lines) if s.strip().startswith("- window_attention:")]
    where = f"{SPEC}:{row + 1}:{lines[row].index('window_attention') + 1}:"
    out = tmp_path / "swin.onnx"
    code, _, err = cli(capsys, "export", SPEC, "--dynamic-size", "-o", out)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"{where} --dynamic-size: window_attention 'stage1.0.attn1'"), err
    assert "56×56 map" in err
    assert not out.exists()


# ---------------------------------------------------------------------------- import
def round_trip(module: torch.nn.Module, shape: tuple[int, ...]) -> str:
    """``netspec import`` of a module, its spec checked against the module's outputs and
    count; the spec's text."""
    from netspec.backends.torch.sources import compare_with_torch
    from netspec.backends.torch.trace import flatten_module
    from netspec.importer.pipeline import spec_from_flat

    module.eval()
    imported = spec_from_flat(flatten_module(module, "net", "test", shape), ["test"],
                              "net.yaml")
    agreement = compare_with_torch(module, imported.graph, imported.weights)
    assert agreement.ok and agreement.ref_max > 0, (agreement, imported.text)
    again = netspec.loads(imported.text)
    assert again.params().params == sum(p.numel() for p in module.parameters())
    return imported.text


def test_a_built_swin_imports_back() -> None:
    """A small swin_t built by netspec reads back as window_attention and patch_merge
    layers, their windows and shifts as the spec gave them."""
    _, ours = built(SMALL)
    text = round_trip(ours, (3, 32, 32))
    assert text.count("- patch_merge") == 3
    assert text.count("window_attention: {heads: 2, shift: 1}") == 1, text
    assert "window_attention: {window: 2}" in text, text  # every layer's: a default
