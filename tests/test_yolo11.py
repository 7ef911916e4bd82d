"""specs/yolo11n.yaml is Ultralytics' YOLO11 (yolo11.yaml), tensor for tensor by position:
Ultralytics' published parameter counts at every scale through ``--set``, the state_dict
of tests/reference_nets_yolo11.py (Ultralytics' modules written out, their names and
registration order) pairing by position, the same eval-mode outputs with its weights, and
an ONNX export with every BatchNorm folded that computes them too.

Ultralytics cannot be installed here; the reference is written from its source (the YOLO11
release: block.py, conv.py, head.py, tasks.py's parse_model), Attention with Ultralytics'
own view/split arithmetic, so the spec's reading of its channel layout (q, k, v side by
side per head; v head-major for ``pe``) is checked against that, not against itself."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import onnx
import onnxruntime as ort
import pytest
import torch
import yaml
from reference_nets_yolo11 import C2PSA, SCALES, YOLO11, yolo11n
from zoo import REFERENCES, YOLO11_REFERENCES, randomize

import netspec
from netspec.backends.onnx.export import export_onnx
from netspec.cli import main

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "yolo11n.yaml"

#: each scale as the spec's vars (its description says how), with Ultralytics' published
#: summary for it, written out here: yolo11.yaml's comments ("319 layers, 2624080
#: parameters, 2624064 gradients, 6.6 GFLOPs" for n; 80 classes; the 16 fixed DFL weights
#: are parameters without gradients)
VARIANTS: dict[str, tuple[dict[str, Any], int, int]] = {
    "n": ({}, 2_624_080, 2_624_064),
    "s": ({"width": 0.5}, 9_458_752, 9_458_736),
    "m": ({"width": 1.0, "max_channels": 512, "c3k": 1}, 20_114_688, 20_114_672),
    "l": ({"depth": 1.0, "width": 1.0, "max_channels": 512, "c3k": 1},
          25_372_160, 25_372_144),
    "x": ({"depth": 1.0, "width": 1.5, "max_channels": 512, "c3k": 1},
          56_966_176, 56_966_160),
}
#: onnx ops that a BatchNorm left unfolded, a dropout or a no-op would show as
GONE = {"BatchNormalization", "Dropout", "Identity"}


# ----------------------------------------------------------------------------- helpers
@pytest.fixture(autouse=True, scope="module")
def _one_thread(torch_one_thread: None) -> None:
    """One torch thread: these small convolutions gain little from more, and on a
    machine shared with other work, threads waiting on each other cost the most."""


def cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def sets(vars: dict[str, Any]) -> list[str]:
    return [a for k, v in vars.items() for a in ("--set", f"{k}={v}")]


def tensors(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """A state_dict's weights and statistics in order: without BN's num_batches_tracked,
    a step counter both hold at the same places, which netspec's weights leave out."""
    return [(k, v) for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")]


def paired(ref: torch.nn.Module, ours: torch.nn.Module) -> None:
    """Copy the reference's tensors into ours by position, every shape checked, as an
    Ultralytics state_dict loads into the spec."""
    theirs, mine = tensors(ref), tensors(ours)
    assert len(theirs) == len(mine)
    with torch.no_grad():
        for (tk, tv), (mk, mv) in zip(theirs, mine, strict=True):
            assert tv.shape == mv.shape, (tk, mk)
            mv.copy_(tv)


def reference(scale: str, size: int, seed: int = 0) -> YOLO11:
    """The reference in eval mode: γ, δ and biases randomised (zoo.randomize), and every
    BN's running statistics those of its own input on a batch of random images. With
    torch's initial conv weights and random statistics, 24 layers of YOLO shrink the
    image's part of the outputs to ~1e-5 of the biases' part, and a comparison of
    outputs would check little more than the biases; normalised by what they see, the
    layers keep it (the outputs vary by tens between images), and the statistics still
    differ per channel and from 0 and 1."""
    torch.manual_seed(seed)
    ref = YOLO11(scale)
    randomize(ref, seed)
    norms = [m for m in ref.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # the plain average: this one batch's statistics
    with torch.no_grad():
        ref.train()(images(size, batch=4, seed=seed + 100))
    return ref.eval()


def images(size: int, batch: int = 2, seed: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def same_outputs(got: Any, want: list[torch.Tensor], within: float = 1e-5) -> None:
    """Equal maps, to float32 rounding: ``within`` of each map's largest value (the maps
    reach tens to hundreds; through 24 layers and the attention's softmax, the roundings
    of two orders of summation reach ~2e-6 of that in torch, ~1e-5 in onnxruntime)."""
    got = [torch.as_tensor(a) for a in got]  # netspec: a tuple; Ultralytics: a list
    assert len(got) == len(want) == 3
    for a, b in zip(got, want, strict=True):
        scale = float(b.abs().max())
        # the comparison means something: the maps depend on the image, far beyond
        # the tolerance
        assert float((b - b[:1]).abs().max()) > 0.1 * scale
        torch.testing.assert_close(a, b, rtol=1e-5, atol=within * scale)


def spec_of_blocks(layers: list[Any], input: list[int]) -> netspec.Graph:
    """A spec made of yolo11n.yaml's own defaults and blocks around other layers."""
    bundled = yaml.safe_load(SPEC.read_text())
    doc = {"netspec": 1, "name": "part", "input": input, "defaults": bundled["defaults"],
           "blocks": bundled["blocks"], "layers": layers}
    return netspec.loads(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


# ----------------------------------------------------------------------------- counts
def test_the_reference_is_registered_beside_the_zoo() -> None:
    assert YOLO11_REFERENCES["yolo11n"] is yolo11n
    # kept out of REFERENCES: tests/test_import.py imports those (zoo.py says why)
    assert "yolo11n" not in REFERENCES


@pytest.mark.parametrize("scale", list(VARIANTS))
def test_the_cli_prints_ultralytics_count(scale: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """``netspec params`` at each scale's vars prints Ultralytics' summary: parameters,
    and as trainable its gradients (all but the DFL's 16 fixed weights)."""
    vars, published, gradients = VARIANTS[scale]
    with torch.device("meta"):  # shapes only: the large scales allocate nothing
        ref = YOLO11(scale)
    # the reference holds what Ultralytics publishes, and so does the spec
    assert sum(p.numel() for p in ref.parameters()) == published
    assert sum(p.numel() for p in ref.parameters() if p.requires_grad) == gradients
    code, out, err = cli(capsys, "params", SPEC, *sets(vars))
    assert code == 0, err
    line = next(s for s in out.splitlines() if s.startswith("parameters"))
    assert re.match(rf"parameters\s+{published:,}\s+\(trainable {gradients:,}\)", line), line


@pytest.mark.parametrize("scale", list(VARIANTS))
def test_the_state_dict_pairs_with_ultralytics_by_position(scale: str) -> None:
    """Every tensor of the reference's state_dict has the shape of the spec's at the same
    position: Ultralytics' yolo11{scale}.pt weights load in order."""
    vars = VARIANTS[scale][0]
    # the vars are yolo11.yaml's scale (the spec's defaults being scale n)
    assert SCALES[scale] == (vars.get("depth", 0.5), vars.get("width", 0.25),
                             vars.get("max_channels", 1024))
    with torch.device("meta"):
        ref = YOLO11(scale)
        ours = netspec.build(netspec.load(SPEC, **vars))
    theirs, mine = tensors(ref), tensors(ours)
    assert len(mine) == len(theirs)
    for i, ((tk, tv), (mk, mv)) in enumerate(zip(theirs, mine, strict=True)):
        assert tv.shape == mv.shape, f"{scale}: tensor {i} is {mk} {tuple(mv.shape)} in " \
                                     f"the spec, {tk} {tuple(tv.shape)} in Ultralytics'"
    # both end with the DFL's fixed weights (Detect registers its dfl last)
    assert theirs[-1][0] == "model.23.dfl.conv.weight" and mine[-1][0].startswith("dfl.")


# ---------------------------------------------------------------------------- outputs
@pytest.mark.parametrize("c", [256, 384])
def test_c2psa_computes_ultralytics_attention(c: int) -> None:
    """The spec's C2PSA block alone against Ultralytics' (2 and 3 heads, two PSA blocks),
    on a map that is not square: the value path of ``pe`` reads v head-major."""
    torch.manual_seed(c)
    ref = C2PSA(c, c, n=2).eval()
    randomize(ref, c)
    ours = netspec.build(spec_of_blocks([{"c2psa": {"c": c, "n": 2}}], [c, 5, 7])).eval()
    paired(ref, ours)
    x = torch.randn(2, c, 5, 7, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = ref(x), ours(x)
        # pe adds a visible term, so a v read in another channel order would show
        pe = [m.attn.pe.bn for m in ref.m]
        for bn in pe:
            bn.weight.zero_(), bn.bias.zero_()
        without_pe = ref(x)
    assert float((want - without_pe).abs().max()) > 0.1
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize(("scale", "size"), [("n", 128), ("s", 64), ("m", 64)])
def test_eval_outputs_equal_ultralytics(scale: str, size: int) -> None:
    ref = reference(scale, size)
    ours = netspec.build(netspec.load(SPEC, size=size, **VARIANTS[scale][0])).eval()
    paired(ref, ours)
    x = images(size)
    with torch.no_grad():
        same_outputs(ours(x), ref(x))


def test_onnx_export_computes_ultralytics_outputs() -> None:
    """The export with the reference's weights: verified against the torch module, every
    BatchNorm folded into its conv, no dropout or no-op left, and onnxruntime computing
    the reference's own outputs."""
    ref = reference("n", 128, seed=3)
    graph = netspec.load(SPEC, size=128)
    names = [k for k, _ in tensors(netspec.build(graph))]
    weights = {k: v.numpy() for k, (_, v) in zip(names, tensors(ref), strict=True)}
    model, report = export_onnx(graph, weights, verify_batches=(1, 2))
    assert report.verification is not None and report.verification.ok
    ops = {n.op_type for n in model.graph.node}
    assert not ops & GONE, ops & GONE
    assert {"Conv", "MatMul", "Softmax", "Concat"} <= ops
    # every batch norm follows a conv that feeds only it: each one folds into its conv
    n_bn = sum(node.op == "batchnorm" for node in graph)
    assert n_bn == len(report.folds) == 81
    assert report.summary == "batchnorm: 81 (81 folded into conv)"
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["p3", "p4", "p5"]
    x = images(128, seed=4)
    outs = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        want = ref(x)
    # BN folded into the convs rounds otherwise than conv then BN (export's own
    # tolerance: 1e-4 of the output's scale)
    same_outputs(outs, want, within=1e-4)
    onnx.checker.check_model(model)
