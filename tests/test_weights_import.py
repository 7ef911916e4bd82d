"""``netspec weights import``, checkpoints that remember their vars, and the Python API
``netspec.load_weights`` / ``netspec.export_onnx(graph, weights=model)``.

References come from outside netspec: state dicts written with ``torch.save`` by the
hand-written torchvision-layout networks in tests/reference_nets.py, whose outputs the
imported-then-exported ONNX models must reproduce in onnxruntime.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import reference_nets
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

import netspec
from netspec.cli import main
from netspec.weights import load_weights
from netspec.weights_import import pair, spec_tensors

ROOT = Path(__file__).resolve().parent.parent
RESNET18 = str(ROOT / "specs" / "resnet18.yaml")
DIGITS_CNN = str(ROOT / "specs" / "digits_cnn.yaml")
MLP = str(ROOT / "specs" / "mlp.yaml")


@pytest.fixture(scope="module")
def reference_resnet18() -> torch.nn.Module:
    """torchvision's resnet18 layout, 10 classes, with BN statistics and affine terms
    that are not the identity (so the BN folding in the export is really exercised)."""
    torch.manual_seed(0)
    net = reference_nets.resnet18(num_classes=10)
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return net.eval()


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("wrapped", [False, True], ids=["plain", "model-key"])
def test_torchvision_resnet18_imports_and_exports_equal_to_the_reference(
        reference_resnet18, tmp_path, capsys, wrapped):
    sd = reference_resnet18.state_dict()
    src = tmp_path / "resnet18.pth"
    torch.save({"model": sd, "epoch": 90} if wrapped else sd, src)
    out = tmp_path / "r18.safetensors"
    assert main(["weights", "import", RESNET18, str(src), "--set", "classes=10",
                 "-o", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "paired 102 tensors by position" in stdout
    assert "20 num_batches_tracked skipped" in stdout
    assert "layer2.0.downsample.0.weight → layer2.0.shortcut.conv1.weight" in stdout
    assert ("under 'model'" in stdout) == wrapped
    meta = load_weights(out)[1]
    assert json.loads(meta["netspec.vars"]) == {"classes": 10, "width": 64}
    assert "name: resnet18" in meta["netspec.spec"]

    onnx_path = tmp_path / "r18.onnx"
    # no --set: the vars recorded in the weights (classes=10) are used, and said so
    assert main(["export", RESNET18, "--weights", str(out), "-o", str(onnx_path),
                 "--no-verify"]) == 0
    assert "using the vars recorded in" in capsys.readouterr().err
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = reference_resnet18(x).numpy()
    got = ort.InferenceSession(str(onnx_path)).run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_ddp_prefixes_ema_key_npz_and_safetensors_pair_by_name(tmp_path, capsys):
    torch.manual_seed(3)
    model = netspec.build(DIGITS_CNN)
    sd = model.state_dict()
    want = {k: v.numpy() for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    sources = {
        "ddp.pth": {"ema": {f"module.{k}": v for k, v in sd.items()}, "step": 7},
        "plain.npz": {k: v.numpy() for k, v in reversed(list(sd.items()))},
        "legacy.pt": dict(sd),  # torch.save's pre-1.6 format, which cannot be mmapped
        "plain.safetensors": {k: v.numpy() for k, v in sd.items()},
    }
    for name, obj in sources.items():
        src = tmp_path / name
        if name.endswith(".pth"):
            torch.save(obj, src)
        elif name.endswith(".pt"):
            torch.save(obj, src, _use_new_zipfile_serialization=False)
        elif name.endswith(".npz"):
            np.savez(src, **obj)
        else:
            save_file(obj, str(src))
        out = tmp_path / f"{name}.safetensors"
        assert main(["weights", "import", DIGITS_CNN, str(src), "-o", str(out)]) == 0
        stdout = capsys.readouterr().out
        assert "by name" in stdout, stdout
        assert ("prefix 'module.' removed" in stdout) == name.startswith("ddp")
        got = load_file(str(out))
        assert got.keys() == want.keys()
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])


def test_map_file_renames_before_pairing(reference_resnet18, tmp_path, capsys):
    src = tmp_path / "r.pth"
    torch.save(reference_resnet18.state_dict(), src)
    mapping = tmp_path / "map.yaml"
    mapping.write_text("".join(
        f"layer{i}.0.downsample.0.: layer{i}.0.shortcut.conv1.\n"
        f"layer{i}.0.downsample.1.: layer{i}.0.shortcut.bn1.\n" for i in (2, 3, 4)))
    out = tmp_path / "r.safetensors"
    assert main(["weights", "import", RESNET18, str(src), "--set", "classes=10",
                 "--map", str(mapping), "-o", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "paired 102 tensors by name" in stdout and "15 renamed by --map" in stdout
    got = load_file(str(out))
    np.testing.assert_array_equal(got["layer3.0.shortcut.conv1.weight"],
                                  reference_resnet18.layer3[0].downsample[0].weight.detach().numpy())


def test_a_pickled_whole_model_is_refused_in_one_line(reference_resnet18, tmp_path, capsys):
    src = tmp_path / "whole.pt"
    torch.save(reference_resnet18, src)  # as Ultralytics' .pt files do
    out = tmp_path / "out.safetensors"
    assert main(["weights", "import", RESNET18, str(src), "-o", str(out)]) == 2
    err = _one_error_line(capsys)
    assert "holds a pickled Python object (reference_nets.ResNet) that netspec will not run" \
        in err and "torch.save(model.state_dict()" in err
    assert "weights_only" not in err
    assert not out.exists()


def test_misfits_name_the_tensor_and_the_spec_layer(reference_resnet18, tmp_path, capsys):
    sd = reference_resnet18.state_dict()
    out = tmp_path / "out.safetensors"
    cases = {
        # 1000 classes in the spec, 10 in the weights: the head does not fit
        "wrong_shape": (dict(sd), [], "tensor 'fc.weight' [10, 512] does not fit 'fc.weight' "
                        "[1000, 512] of spec layer fc (linear)"),
        "fewer": ({k: v for k, v in sd.items() if k != "fc.bias"}, ["--set", "classes=10"],
                  "nothing left for 'fc.bias' [10] of spec layer fc"),
        "more": ({**sd, "extra.weight": torch.zeros(3)}, ["--set", "classes=10"],
                 "'extra.weight' [3] and 0 more are left over"),
    }
    for name, (state, sets, message) in cases.items():
        src = tmp_path / f"{name}.pth"
        torch.save(state, src)
        assert main(["weights", "import", RESNET18, str(src), *sets, "-o", str(out)]) == 2
        err = _one_error_line(capsys)
        assert message in err, err
        assert not out.exists()
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a torch file at all")
    assert main(["weights", "import", RESNET18, str(bad), "-o", str(out)]) == 2
    assert "not a readable torch.save file" in _one_error_line(capsys)
    assert not out.exists()


@settings(max_examples=25, deadline=None)
@given(st.randoms(use_true_random=False), st.booleans())
def test_pairing_by_name_ignores_order_and_by_position_keeps_it(rnd, rename):
    """Any order of correctly named tensors pairs by name; the spec's order under other
    names pairs by position; both give back exactly the tensors that were put in."""
    graph = netspec.load(MLP)
    want = spec_tensors(graph)
    arrays = {t.name: np.random.default_rng(i).standard_normal(t.shape).astype(np.float32)
              for i, t in enumerate(want)}
    if rename:
        source = {f"x{i}.{t.name.replace('.', '_')}": arrays[t.name]
                  for i, t in enumerate(want)}
    else:
        names = list(arrays)
        rnd.shuffle(names)
        source = {n: arrays[n] for n in names}
    p = pair(graph, source, "src")
    assert p.how == ("position" if rename else "name")
    assert p.tensors.keys() == arrays.keys()
    for k, v in arrays.items():
        np.testing.assert_array_equal(p.tensors[k], v)


# ---------------------------------------------------------------- remembered vars


def test_checkpoints_remember_their_vars(tmp_path, capsys):
    w8 = tmp_path / "w8.safetensors"
    assert main(["build", DIGITS_CNN, "--set", "width=8", "-o", str(w8)]) == 0
    capsys.readouterr()
    assert json.loads(load_weights(w8)[1]["netspec.vars"]) == {"classes": 10, "width": 8}

    onnx_path = tmp_path / "m.onnx"
    assert main(["export", DIGITS_CNN, "--weights", str(w8), "-o", str(onnx_path),
                 "--no-verify"]) == 0
    assert "note: using the vars recorded in" in capsys.readouterr().err
    props = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert json.loads(props["netspec.vars"])["width"] == 8

    assert main(["build", DIGITS_CNN, "--weights", str(w8)]) == 0
    assert "note: using the vars recorded in" in capsys.readouterr().err
    pytest.importorskip("sklearn.datasets")  # --data digits, in the [test] extra
    cal = tmp_path / "cal.safetensors"
    assert main(["calibrate", DIGITS_CNN, "--weights", str(w8), "--data", "digits",
                 "--device", "cpu", "-o", str(cal)]) == 0
    assert "note: using the vars recorded in" in capsys.readouterr().err
    assert json.loads(load_weights(cal)[1]["netspec.vars"])["width"] == 8

    # a contradicting --set: one line naming the vars the weights were made with
    assert main(["export", DIGITS_CNN, "--set", "width=16", "--weights", str(w8),
                 "-o", str(tmp_path / "bad.onnx"), "--no-verify"]) == 2
    err = _one_error_line(capsys)
    assert "made with --set width=8" in err and "width=16" in err
    assert not (tmp_path / "bad.onnx").exists()

    # a different text of the spec: the vars are not applied, but named
    other = tmp_path / "digits_cnn_edited.yaml"
    other.write_text(Path(DIGITS_CNN).read_text() + "\n# edited\n")
    assert main(["export", str(other), "--weights", str(w8), "-o", str(tmp_path / "o.onnx"),
                 "--no-verify"]) == 2
    assert "pass --set width=8" in _one_error_line(capsys)

    # export --set writes the vars it was given into the ONNX metadata
    assert main(["export", DIGITS_CNN, "--set", "width=16", "-o", str(tmp_path / "w16.onnx"),
                 "--no-verify"]) == 0
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "w16.onnx")).metadata_props}
    assert json.loads(props["netspec.vars"])["width"] == 16


# ---------------------------------------------------------------- Python API


def test_python_api_load_weights_and_export_from_a_model(reference_resnet18, tmp_path):
    src = tmp_path / "r.pth"
    torch.save({"state_dict": reference_resnet18.state_dict()}, src)
    graph = netspec.load(RESNET18, classes=10)
    model = netspec.build(graph).eval()
    assert netspec.load_weights(model, src) == {}
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        want = reference_resnet18(x).numpy()
        np.testing.assert_allclose(model(x).numpy(), want, rtol=1e-5, atol=1e-6)
    for weights in (model, model.state_dict()):
        proto, _ = netspec.export_onnx(graph, weights=weights, verify=False)
        got = ort.InferenceSession(proto.SerializeToString()).run(None, {"input": x.numpy()})[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
