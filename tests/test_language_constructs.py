"""The constructs of today's networks — references (``in``, ``m.i``, ``m.*``), ``input:``,
split, parallel, shortcut-first residuals, layer scale registered first, stochastic
depth, several outputs, DFL and ``repeat: 0`` — each checked against torch's own ops or
a formula written here, never against netspec's own output."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

import netspec
from netspec.backends.onnx import export_onnx
from netspec.backends.torch import param_groups


def spec(layers: str, input: str = "[8, 6, 6]", head: str = "") -> str:
    body = textwrap.indent(textwrap.dedent(layers).strip(), "  ")
    return f"netspec: 1\nname: t\ninput: {input}\n{head}layers:\n{body}\n"


def randomize(model: torch.nn.Module) -> None:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn_like(p) * 0.5)


# ----------------------------------------------------------------- references, merges
def test_squeeze_excitation_multiplies_the_block_input_by_its_gate() -> None:
    g = netspec.loads(spec("""\
        - conv: {out: 8, k: 3}
        - se: {squeeze: 2}
        """, head=textwrap.dedent("""\
        blocks:
          se:
            args: {squeeze: required}
            layers:
              - global_avgpool
              - conv: {out: $squeeze, k: 1}
              - relu
              - conv: {out: $in, k: 1}
              - sigmoid
              - mul: [in]
        """)))
    assert g["se1.mul1"].inputs == ("se1.sigmoid1", "conv1")
    m = netspec.build(g).eval()
    randomize(m)
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        h = m.conv1(x)
        s = h.mean((2, 3), keepdim=True)
        s = torch.sigmoid(m.se1.conv2(F.relu(m.se1.conv1(s))))
        torch.testing.assert_close(m(x), s * h)


def test_split_parts_repeat_copies_and_star_references() -> None:
    g = netspec.loads(spec("""\
        - split: {parts: 2, as: y}
        - conv: {out: 4, k: 3, repeat: 3, as: m}
        - concat: [y.*, m.*]
        - split: {sizes: [2, 18], as: z}
        - concat: [z.1, z.0, m.1]
        """))
    assert g["cat1"].inputs == ("y.0", "y.1", "m.0", "m.1", "m.2")
    assert g["cat2"].inputs == ("z.1", "z.0", "m.1")
    assert (g["z.0"].shape, g["z.1"].shape) == ((2, 6, 6), (18, 6, 6))
    m = netspec.build(g).eval()
    randomize(m)
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        y0, y1 = x.chunk(2, 1)
        m0 = getattr(m.m, "0")(y1)
        m1 = getattr(m.m, "1")(m0)
        m2 = getattr(m.m, "2")(m1)
        c = torch.cat([y0, y1, m0, m1, m2], 1)
        z0, z1 = c.split([2, 18], 1)
        torch.testing.assert_close(m(x), torch.cat([z1, z0, m1], 1))


def test_repeat_zero_passes_the_tensor_through() -> None:
    g = netspec.loads(spec("- conv: {out: 4, k: 3, as: a}\n- conv: {out: 9, k: 1, repeat: 0, "
                           "as: m}\n- concat: [a, m.*, m]\n"))
    assert g["cat1"].inputs == ("a", "a")  # m is a's tensor, m.* is empty
    assert len(g.layers) == 2


def test_input_key_reads_an_earlier_tensor() -> None:
    g = netspec.loads(spec("""\
        - conv: {out: 4, k: 3, as: a}
        - conv: {out: 5, k: 1, as: b}
        - conv: {out: 6, k: 1, input: a, as: c}
        - concat: {from: [c], input: b}
        """))
    assert g["c"].inputs == ("a",)
    assert g["cat1"].inputs == ("b", "c") and g["cat1"].shape == (11, 6, 6)


def test_parallel_branches_concat_in_order_and_register_in_order() -> None:
    g = netspec.loads(spec("""\
        - parallel:
            branches:
              - conv: {out: 2, k: 1}
              - [conv: {out: 3, k: 3}, relu]
              - identity
            as: inc
        """))
    assert g["inc"].inputs == ("branch1.conv1", "branch2.relu1", "input")
    m = netspec.build(g).eval()
    assert [k for k in m.state_dict()] == ["branch1.conv1.weight", "branch1.conv1.bias",
                                          "branch2.conv1.weight", "branch2.conv1.bias"]
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        want = torch.cat([m.branch1.conv1(x), F.relu(m.branch2.conv1(x)), x], 1)
        torch.testing.assert_close(m(x), want)


def test_mul_broadcasts_like_torch() -> None:
    g = netspec.loads(spec("- conv: {out: 8, k: 1, as: a}\n- global_avgpool\n- mul: [a]\n"))
    assert g["mul1"].shape == (8, 6, 6)
    m = netspec.build(g).eval()
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        a = m.a(x)
        torch.testing.assert_close(m(x), a.mean((2, 3), keepdim=True) * a)


def test_shuffle_is_torchvisions_channel_shuffle() -> None:
    m = netspec.build(netspec.loads(spec("- shuffle: 4\n")))
    x = torch.randn(2, 8, 3, 3)
    # torchvision's channel_shuffle, written out
    want = x.view(2, 4, 2, 3, 3).transpose(1, 2).reshape(2, 8, 3, 3)
    torch.testing.assert_close(m(x), want)


# ----------------------------------------------------------------- registration order
def test_shortcut_first_registers_and_runs_the_projection_before_the_body() -> None:
    text = """\
        - residual:
            body: [conv: {out: 4, k: 3, stride: 2, bias: false}, norm: batch]
            shortcut_first: FIRST
        """
    plain = netspec.loads(spec(text.replace("FIRST", "false")))
    first = netspec.loads(spec(text.replace("FIRST", "true")))
    assert next(iter(plain.param_shapes())) == "conv1.weight"
    assert list(first.param_shapes())[:2] == ["shortcut.conv1.weight", "shortcut.bn1.weight"]
    names = list(first.nodes)
    assert names.index("shortcut.conv1") < names.index("conv1")  # still topological
    a, b = netspec.build(plain).eval(), netspec.build(first).eval()
    randomize(a)
    b.load_state_dict(a.state_dict())  # by name: the same tensors, other order
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))


def test_layer_scale_registers_first_in_its_block_as_torchvision_convnext() -> None:
    g = netspec.loads(spec("- cnblock\n- cnblock\n", head=textwrap.dedent("""\
        blocks:
          cnblock:
            layers:
              - residual:
                  body:
                    - conv: {out: $in, k: 3, groups: $in}
                    - norm: {kind: layer, over: channels}
                    - linear: {out: 16, over: channels}
                    - gelu
                    - linear: {out: $in, over: channels}
                    - layer_scale: {init: 0.5, register_first: true}
                    - drop_path: {drop: 0.5}
        """)))
    keys = list(netspec.build(g).state_dict())
    assert keys[0] == "cnblock1.scale1.weight" and keys[1] == "cnblock1.conv1.weight"
    assert keys.index("cnblock2.scale1.weight") == keys.index("cnblock1.fc2.bias") + 1
    assert g.param_shapes()["cnblock1.scale1.weight"] == (8, 1, 1)
    m = netspec.build(g).eval()
    randomize(m)
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():  # torchvision's CNBlock: permute, LayerNorm, Linear, GELU, …
        blk = m.cnblock1
        h = blk.conv1(x).permute(0, 2, 3, 1)
        h = F.layer_norm(h, (8,), blk.ln1.weight, blk.ln1.bias, 1e-5)
        h = F.linear(F.gelu(F.linear(h, blk.fc1.weight, blk.fc1.bias)), blk.fc2.weight,
                     blk.fc2.bias).permute(0, 3, 1, 2)
        want = x + blk.scale1.weight * h  # drop path is the identity at inference
        torch.testing.assert_close(_through(m, "cnblock1.add1", x), want)


def _through(model: torch.nn.Module, node: str, x: torch.Tensor) -> torch.Tensor:
    """The value of Graph node ``node`` when ``model`` runs on ``x``."""
    env: dict[str, torch.Tensor] = {}
    for n in model.graph.nodes:  # type: ignore[union-attr]
        if n.op == "placeholder":
            env[n.name] = x
            continue
        if n.op == "output":
            break
        args = torch.fx.node.map_arg(n.args, lambda a: env[a.name])
        if n.op == "call_module":
            env[n.name] = model.get_submodule(n.target)(*args)
        else:
            env[n.name] = n.target(*args)
        if n.meta.get("netspec_node") == node:
            return env[n.name]
    raise AssertionError(node)


# ----------------------------------------------------------------- training-only layers
def test_drop_path_drops_whole_samples_and_scales_survivors() -> None:
    m = netspec.build(netspec.loads(spec("- drop_path: {drop: 0.25}\n", input="[4, 3, 3]")))
    x = torch.ones(4000, 4, 3, 3)
    m.train()
    torch.manual_seed(0)
    y = m(x)
    per_sample = y.flatten(1)
    kept = (per_sample != 0).all(1)
    assert ((per_sample == 0).all(1) | kept).all()  # a sample is kept or dropped whole
    torch.testing.assert_close(per_sample[kept], torch.full_like(per_sample[kept], 1 / 0.75))
    assert abs(kept.float().mean().item() - 0.75) < 0.03
    m.eval()
    torch.testing.assert_close(m(x), x)


def test_prelu_slopes_and_norms_stay_out_of_weight_decay() -> None:
    g = netspec.loads(spec("- conv: {out: 4, k: 3}\n- prelu: {per_channel: true}\n"
                           "- norm: {kind: layer, over: channels}\n- layer_scale\n"))
    m = netspec.build(g)
    decayed, free = param_groups(m, 0.1)
    names = {id(p): k for k, p in m.named_parameters()}
    assert {names[id(p)] for p in decayed["params"]} == {"conv1.weight", "scale1.weight"}
    assert {names[id(p)] for p in free["params"]} == {"conv1.bias", "prelu1.weight",
                                                      "ln1.weight", "ln1.bias"}


# ----------------------------------------------------------------- outputs, DFL
DETECT = """\
- conv: {out: 8, k: 3, as: stem}
- conv: {out: 8, k: 1, as: box}
- conv: {out: 3, k: 1, input: stem, as: cls}
- concat: {from: [cls], input: box, as: p}
- dfl: {bins: 2, input: box, as: d}
- dfl: {bins: 2, input: box, as: held}
"""


def test_several_outputs_in_torch_onnx_and_params() -> None:
    g = netspec.loads(spec(DETECT, input="[3, 8, 8]", head="task: features\noutputs: [p, d]\n"))
    assert g.outputs == ("p", "d") and g.task == "features"
    assert g["held"].note.startswith("feeds no output")
    counts = g.params()
    assert counts.params - counts.trainable == 4  # two DFLs' fixed 0, 1
    m = netspec.build(g).eval()
    assert "held.weight" in m.state_dict() and "held" not in m.code
    randomize(m)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        p, d = m(x)
        box = m.box(m.stem(x))
        torch.testing.assert_close(p, torch.cat([box, m.cls(m.stem(x))], 1))
        # DFL written out: per side, the softmax over 2 bins, times 0 and 1
        probs = box.view(2, 4, 2, 8, 8).softmax(2)
        torch.testing.assert_close(d, probs[:, :, 1])
    weights = {k: v.detach().numpy() for k, v in m.state_dict().items()}
    model, report = export_onnx(g, weights)
    assert [o.name for o in model.graph.output] == ["p", "d"]
    assert report.verification is not None and report.verification.ok
    assert not any(i.name.startswith("held") for i in model.graph.initializer)
    session = ort.InferenceSession(model.SerializeToString())
    p_ort, d_ort = session.run(None, {"input": x.numpy()})
    np.testing.assert_allclose(d_ort, d.numpy(), atol=1e-5)
    np.testing.assert_allclose(p_ort, p.numpy(), atol=1e-5)


def test_split_exports_as_one_split_and_shuffle_as_reshape_transpose() -> None:
    g = netspec.loads(spec("- split: {parts: 2, as: x}\n- conv: {out: 4, k: 1, as: b}\n"
                           "- concat: [x.0, b]\n- shuffle: 2\n"))
    model, report = export_onnx(g)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Split") == 1 and "Slice" not in ops
    assert ["Reshape", "Transpose", "Reshape"] == [o for o in ops if o in
                                                   ("Reshape", "Transpose")]
    assert report.verification is not None and report.verification.ok


def test_layer_scale_folds_into_the_linear_before_it() -> None:
    g = netspec.loads(spec("- linear: {out: 8, over: channels}\n- layer_scale: 0.3\n- relu\n"
                           "- layer_scale: 2.0\n"))
    model, report = export_onnx(g)
    folds = {e.layer: e for e in report.folds}
    assert folds["scale1"].action == "folded" and folds["scale1"].into == "fc1"
    assert folds["scale2"].action == "mul"  # after a relu: one Mul
    assert [n.op_type for n in model.graph.node] == ["Conv", "Relu", "Mul"]
    onnx.checker.check_model(model)


@pytest.mark.parametrize("text", [
    "- conv: {out: 4, k: 3}\n- concatt: [a]\n",
    "- conv: {out: 4, k: 3}\n- maxpol: 2\n",
])
def test_misspelt_kinds_in_shorthand_are_unknown_kinds(text: str) -> None:
    with pytest.raises(netspec.NetspecError, match=r"unknown layer kind '\w+' \(did you mean"):
        netspec.loads(spec(text))


def test_cli_run_writes_every_output_of_a_detector(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from netspec.cli import main

    text = spec(DETECT, input="[3, 8, 8]", head="task: features\noutputs: [p, d]\n")
    (tmp_path / "det.yaml").write_text(text)
    assert main(["build", str(tmp_path / "det.yaml"), "-o", str(tmp_path / "w.safetensors"),
                 "--seed", "3"]) == 0
    assert main(["export", str(tmp_path / "det.yaml"), "--weights",
                 str(tmp_path / "w.safetensors"), "-o", str(tmp_path / "det.onnx")]) == 0
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    capsys.readouterr()
    assert main(["run", str(tmp_path / "det.onnx"), "--input", str(tmp_path / "x.npy"),
                 "--output", str(tmp_path / "y.npz")]) == 0
    printed = capsys.readouterr().out
    assert "output p [2, 11, 8, 8]" in printed and "output d [2, 4, 8, 8]" in printed
    got = np.load(tmp_path / "y.npz")
    model = netspec.build(netspec.loads(text)).eval()
    netspec.load_weights(model, tmp_path / "w.safetensors")
    with torch.no_grad():
        p, d = model(torch.from_numpy(x))
    np.testing.assert_allclose(got["p"], p.numpy(), atol=1e-5)
    np.testing.assert_allclose(got["d"], d.numpy(), atol=1e-5)
    # one .npy cannot hold two outputs: refused before anything is written
    assert main(["run", str(tmp_path / "det.onnx"), "--input", str(tmp_path / "x.npy"),
                 "--output", str(tmp_path / "y.npy")]) == 2
    assert not (tmp_path / "y.npy").exists()
