"""``netspec import``: PyTorch modules and ONNX files back to specs, proven equal.

The references of the bundled zoo (tests/reference_nets*.py: torchvision's networks
written out with their module names and classes) are the sources here, since torchvision
does not install beside the CPU torch; tests/with_torchvision/ runs the same round trip over
torchvision's own models where it does. Every check compares with something the import
did not make: the source module's own forward, its ``sum(p.numel())``, onnxruntime
running the source file, the hand-written bundled spec.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import spec_texts
from torch import nn
from zoo import REFERENCES, randomize

import netspec
from netspec.backends.torch.sources import compare_with_torch
from netspec.backends.torch.trace import flatten_module
from netspec.diff import diff
from netspec.importer.elementwise import Expr, recognise
from netspec.importer.pipeline import Imported, spec_from_flat
from netspec.importer.write import scalar
from netspec.yaml_loader import load_text

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
SPECS = ROOT / "specs"
#: the references whose bundled spec imports (YOLOv8's forward is not fx-traceable: it
#: calls len() on traced values, as Ultralytics' own does)
ZOO = [n for n in REFERENCES if n != "yolov8n"]


def _import(module: nn.Module, name: str, shape: tuple[int, ...]) -> Imported:
    net = flatten_module(module, name, name, shape)
    return spec_from_flat(net, [f"test import of {name}"], f"{name}.yaml")


def _netspec(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "netspec", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


# ---------------------------------------------------------------------------- the zoo
@pytest.mark.parametrize("name", ZOO)
def test_a_zoo_network_imports_as_its_hand_written_spec(name: str) -> None:
    """Import the reference at the bundled spec's size (tracing computes nothing): the
    written spec is the bundled one layer by layer (names aside), counts what the source
    holds, and registers its tensors in the source's order."""
    source = REFERENCES[name]()
    imported = _import(source, name, (3, 224, 224))
    bundled = netspec.load(SPECS / f"{name}.yaml")
    d = diff(imported.graph, bundled, "order")
    assert d.changes == [], [(c.name, c.what) for c in d.changes[:5]]
    assert imported.graph.params().params == sum(p.numel() for p in source.parameters())
    assert imported.by_position
    # the weights carry the source's tensors, under the spec's names, in its order
    state = source.state_dict()
    ours = [v for k, v in imported.weights.items()]
    theirs = [v.numpy() for k, v in state.items() if not k.endswith("num_batches_tracked")]
    assert len(ours) == len(theirs)
    assert all(np.array_equal(a.reshape(b.shape), b) for a, b in zip(ours, theirs, strict=True))


@pytest.mark.parametrize("name", ZOO)
def test_a_zoo_network_imported_computes_the_sources_outputs(name: str) -> None:
    torch.manual_seed(0)
    source = REFERENCES[name]()
    randomize(source)
    imported = _import(source, name, (3, 64, 64))
    agreement = compare_with_torch(source, imported.graph, imported.weights)
    assert agreement.ref_max > 0
    assert agreement.max_abs <= 1e-5 * max(1.0, agreement.ref_max), agreement


def test_resnet50_reads_like_the_hand_written_spec() -> None:
    """The issue's measure of a readable spec: at most 1.5× the lines of
    specs/resnet50.yaml, one block, four repeats named as the source's stages."""
    imported = _import(REFERENCES["resnet50"](), "resnet50", (3, 224, 224))
    lines = imported.text.splitlines()
    hand = (SPECS / "resnet50.yaml").read_text().splitlines()
    assert len(lines) <= 1.5 * len(hand), imported.text
    text = imported.text
    assert text.count("  bottleneck:\n") == 1  # one block definition
    for stage, c in (("layer1", 64), ("layer2", 128), ("layer3", 256), ("layer4", 512)):
        assert f"c: {c}" in text and f"as: {stage}" in text
    assert '"2 - min($i, 1)"' in text
    assert "conv: {bias: false}" in text  # a default, not a line per conv


# ---------------------------------------------------------------------------- the CLI
def test_the_command_imports_your_own_module_and_everything_downstream_works(
        tmp_path: Path) -> None:
    """``package.module:callable`` from the current folder, then params, weights, build
    and a verified export of the result, as a user would chain them."""
    spec, weights = tmp_path / "r18.yaml", tmp_path / "r18.safetensors"
    r = _netspec("import", "reference_nets:resnet18", "-o", str(spec), "--weights-out",
                 str(weights), "--input", "3,64,64", "--kw", '{"num_classes": 10}',
                 cwd=TESTS)
    assert r.returncode == 0, r.stderr
    assert "outputs equal the source's" in r.stdout
    assert spec.read_text().startswith("# Imported by netspec")
    source = REFERENCES["resnet18"](num_classes=10)
    r = _netspec("params", str(spec), "--format", "json")
    assert json.loads(r.stdout)["params"] == sum(p.numel() for p in source.parameters())
    onnx_path = tmp_path / "r18.onnx"
    r = _netspec("export", str(spec), "--weights", str(weights), "-o", str(onnx_path))
    assert r.returncode == 0, r.stderr
    assert "BatchNormalization" not in {n.op_type for n in onnx.load(onnx_path).graph.node}


def test_an_existing_output_is_refused_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "x.yaml"
    out.write_text("mine")
    r = _netspec("import", "no_such_module:f", "-o", str(out))
    assert r.returncode == 2 and "exists; pass --force" in r.stderr
    assert out.read_text() == "mine"


def _module_file(tmp_path: Path, body: str) -> None:
    (tmp_path / "mynets.py").write_text("import torch\nfrom torch import nn\n\n" + body)


REFUSALS = {
    # self-attention imports (tests/test_import_tokens.py); keys and values of their own
    # sizes are cross-attention's, which netspec has no kind for
    "attention": ("""
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.attn = nn.MultiheadAttention(8, 2, kdim=4, vdim=4, batch_first=True)
    def forward(self, x):
        x = self.stem(x).flatten(2).transpose(1, 2)
        k = x[:, :, :4]
        return self.attn(x, k, k)[0]
""", "attn: MultiheadAttention projects keys and values from other sizes"),
    "control flow": ("""
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
    def forward(self, x):
        if x.sum() > 0:
            return self.conv(x)
        return x
""", "cannot be traced by torch.fx"),
    "unused weights": ("""
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.aux = nn.Linear(8, 10)
    def forward(self, x):
        return self.conv(x)
""", "aux: 90 parameters the traced forward (eval mode) never uses"),
    "shared weights": ("""
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
    def forward(self, x):
        return self.conv(self.conv(x))
""", "conv: called more than once, sharing its weights"),
    "a constant": ("""
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
    def forward(self, x):
        return self.conv(x) * 2.0
""", "mul has no netspec kind"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_what_netspec_cannot_say_is_refused_in_one_line(tmp_path: Path, case: str) -> None:
    body, message = REFUSALS[case]
    _module_file(tmp_path, body + "\n\ndef make():\n    return Net()\n")
    out = tmp_path / "out.yaml"
    r = _netspec("import", "mynets:make", "-o", str(out), "--input", "3,8,8",
                 "--weights-out", str(tmp_path / "w.safetensors"), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert message in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__") == \
        ["mynets.py"]


@pytest.mark.parametrize(("args", "message"), [
    (["nothing"], "expected torchvision:NAME, timm:NAME, package.module:callable"),
    (["no_such_module:make"], "cannot import no_such_module"),
    (["json:loads", "--kw", "{"], "--kw: not JSON"),
    (["json:loads", "--kw", "[1]"], "--kw: expected a JSON object"),
    (["json:loads", "--input", "3,a"], "--input 3,a: expected C,H,W or F"),
    (["json:loads", "--input", "3,0,4"], "--input 3,0,4: expected 1 or 3 sizes"),
    (["json:dumps"], "json:dumps: dumps() missing 1 required positional argument"),
    (["json:JSONDecodeError", "--kw", '{"msg": "a", "doc": "b", "pos": 0}'],
     "returned JSONDecodeError, not a torch.nn.Module"),
])
def test_bad_sources_and_flags_are_one_line(tmp_path: Path, args: list[str],
                                            message: str) -> None:
    r = _netspec("import", *args, "-o", str(tmp_path / "o.yaml"), cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.yaml").exists()


@pytest.mark.parametrize("library", ["torchvision", "timm"])
def test_a_library_that_is_not_installed_is_named(tmp_path: Path, library: str) -> None:
    import importlib.util
    if importlib.util.find_spec(library) is not None:
        pytest.skip(f"{library} is installed here: tests/with_torchvision imports from it")
    r = _netspec("import", f"{library}:resnet18", "-o", str(tmp_path / "o.yaml"))
    assert r.returncode == 2
    assert f"{library} is not installed" in r.stderr and "pip install" in r.stderr


# ---------------------------------------------------------------------------- ONNX
def _onnx_of(module: nn.Module, path: Path, size: int = 64) -> None:
    module.eval()
    torch.onnx.export(module, (torch.randn(1, 3, size, size),), str(path), dynamo=False,
                      input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})


def _onnx_weight_count(path: Path) -> int:
    """The weights the file's layers compute with (Conv, Gemm: weight and bias), each
    use counted, from onnx's own view of the file."""
    model = onnx.load(path)
    inits = {t.name: t for t in model.graph.initializer}
    aliases = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Identity"}
    total = 0
    for n in model.graph.node:
        if n.op_type in ("Conv", "Gemm"):
            for name in n.input[1:]:
                name = aliases.get(name, name)
                if name in inits:
                    total += int(np.prod(inits[name].dims))
    return total


def test_an_onnx_file_from_torch_onnx_export_round_trips(tmp_path: Path) -> None:
    """resnet18 written by torch.onnx.export (BN folded into conv biases there): the spec
    counts the file's weights, computes onnxruntime's outputs, exports verified."""
    torch.manual_seed(0)
    source = REFERENCES["resnet18"]()
    randomize(source)
    path = tmp_path / "r18.onnx"
    _onnx_of(source, path)
    spec, weights = tmp_path / "r18.yaml", tmp_path / "r18.safetensors"
    r = _netspec("import", str(path), "-o", str(spec), "--weights-out", str(weights))
    assert r.returncode == 0, r.stderr
    g = netspec.load(spec)
    assert g.params().params == _onnx_weight_count(path)
    assert "norm" not in spec.read_text()  # folded: a conv with a bias
    assert "residual" in spec.read_text()
    r = _netspec("export", str(spec), "--weights", str(weights), "-o", str(tmp_path / "b.onnx"))
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("opset", [11, 17, 20])
def test_netspecs_own_export_reads_back_at_any_opset(tmp_path: Path, opset: int) -> None:
    """mobilenet_v3_small exported by netspec (hardswish as HardSigmoid·x before opset 14,
    the SE gate a Mul): imported, it computes what onnxruntime computes from the file, and
    the activations are found whatever ops spell them."""
    path = tmp_path / "m.onnx"
    r = _netspec("export", str(SPECS / "mobilenet_v3_small.yaml"), "-o", str(path),
                 "--opset", str(opset), "--no-verify")
    assert r.returncode == 0, r.stderr
    r = _netspec("import", str(path), "-o", str(tmp_path / "m.yaml"))
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "m.yaml").read_text()
    assert "hardswish" in text and "hardsigmoid" in text and "mul: [in]" in text
    g = netspec.load(tmp_path / "m.yaml")
    assert g.params().params == _onnx_param_count(path)


SOFTPLUS = """netspec: 1
name: sp
input: [3, 8, 8]
layers:
  - conv: {out: 4, k: 3}
  - softplus
  - conv: {out: 4, k: 3}
  - softplus: {beta: 2.0, threshold: 3.0}
  - flatten
  - softplus: 0.5
  - linear: {out: 5}
"""


def test_softplus_comes_back_from_onnx_and_from_torch(tmp_path: Path) -> None:
    """ONNX has no β or threshold on Softplus: netspec's export writes them out, and
    import reads them back; from torch, nn.Softplus's own attributes."""
    spec = tmp_path / "sp.yaml"
    spec.write_text(SOFTPLUS)
    r = _netspec("export", str(spec), "-o", str(tmp_path / "sp.onnx"), "--no-verify")
    assert r.returncode == 0, r.stderr
    r = _netspec("import", str(tmp_path / "sp.onnx"), "-o", str(tmp_path / "back.yaml"))
    assert r.returncode == 0, r.stderr
    kinds = [(n.op, n.args.beta, n.args.threshold) for n in netspec.load(tmp_path / "back.yaml")
             if n.op == "softplus"]
    assert kinds == [("softplus", 1.0, 20.0), ("softplus", 2.0, 3.0), ("softplus", 0.5, 20.0)]
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Softplus(), nn.Conv2d(4, 4, 3),
                           nn.Softplus(2, 3), nn.Flatten(), nn.Softplus(0.5), nn.Linear(64, 5))
    imported = _import(module.eval(), "sp", (3, 8, 8))
    assert "softplus: {beta: 2.0, threshold: 3.0}" in imported.text
    assert "softplus: 0.5" in imported.text or "softplus: {beta: 0.5}" in imported.text


def _onnx_param_count(path: Path) -> int:
    """Every float initializer of more than one value that a layer reads as a weight
    (Conv, Gemm, PRelu inputs after the first), each use counted."""
    model = onnx.load(path)
    inits = {t.name: t for t in model.graph.initializer}
    total = 0
    for n in model.graph.node:
        if n.op_type in ("Conv", "Gemm", "PRelu"):
            total += sum(int(np.prod(inits[i].dims)) for i in n.input[1:] if i in inits)
    return total


HOSTILE = {
    "escape": ("../secret.bin", "outside the model's folder"),
    "absolute": ("/etc/passwd", "outside the model's folder"),
    "missing": ("weights.bin", "cannot read the external data"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_external_data_only_beside_the_file(tmp_path: Path, case: str) -> None:
    location, message = HOSTILE[case]
    model = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[1, 1])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 4, 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2, 4, 4])],
        [onnx.helper.make_tensor("w", onnx.TensorProto.FLOAT, [2, 2, 1, 1], [1.0] * 4)]))
    w = model.graph.initializer[0]
    w.ClearField("float_data")
    w.data_location = onnx.TensorProto.EXTERNAL
    w.external_data.add(key="location", value=location)
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "m.onnx"
    path.write_bytes(model.SerializeToString())
    (tmp_path / "secret.bin").write_bytes(b"\0" * 16)
    r = _netspec("import", str(path), "-o", str(tmp_path / "o.yaml"))
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.yaml").exists()


@pytest.mark.parametrize("content", [b"", b"\x08\x07garbage" * 10, b"\xff" * 100])
def test_a_file_that_is_not_onnx_is_one_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    r = _netspec("import", str(path), "-o", str(tmp_path / "o.yaml"))
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


# ---------------------------------------------------------------------------- properties
_IMPORT_SETTINGS = settings(max_examples=25, deadline=None)


@_IMPORT_SETTINGS
@given(spec=spec_texts())
def test_any_spec_built_then_imported_computes_the_same(spec: tuple[str, Any]) -> None:
    """netspec's own modules read back: the import of a built spec has the original's
    parameter count and layer shapes, and with the built model's weights computes its
    outputs (a few layers have two spellings in a spec — an adaptive pool to 1×1 is a
    global pool — so kinds may differ where the computation does not)."""
    text, _ = spec
    g = netspec.loads(text)
    torch.manual_seed(0)
    model = netspec.build(g).eval()
    randomize(model)
    imported = _import(model, g.name, g.input_shape)
    assert imported.graph.params().params == g.params().params
    assert imported.graph.output_shapes == g.output_shapes
    agreement = compare_with_torch(model, imported.graph, imported.weights)
    assert agreement.ok, (agreement, imported.text)


@pytest.mark.parametrize(("ops", "kind"), [
    ([("Sigmoid", [None]), ("Mul", [None, "prev"])], "silu"),
    ([("HardSigmoid", [None], {"alpha": 1 / 6, "beta": 0.5}), ("Mul", ["prev", None])],
     "hardswish"),
    ([("Div", [None, 2 ** 0.5]), ("Erf", ["prev"]), ("Add", ["prev", 1.0]),
      ("Mul", [None, "prev"]), ("Mul", ["prev", 0.5])], "gelu"),
    ([("Mul", [None, 0.5]), ("Mul", [None, 2 ** -0.5]), ("Erf", ["prev"]),
      ("Add", [1.0, "prev"]), ("Mul", ["first", "prev"])], "gelu"),
    ([("Softplus", [None]), ("Tanh", ["prev"]), ("Mul", [None, "prev"])], "mish"),
    ([("Clip", [None], {"min": 0.0, "max": 6.0})], "relu6"),
    ([("Relu", [None])], "relu"),
])
def test_activations_are_found_by_what_they_compute(ops: list[Any], kind: str) -> None:
    prev: Any = None
    first: Any = None
    for op in ops:
        name, args = op[0], op[1]
        attrs = op[2] if len(op) > 2 else {}
        args = [prev if a == "prev" else first if a == "first" else a for a in args]
        prev = Expr(name, args, attrs)
        first = first or prev
    assert recognise(prev) == (kind, {})


def test_an_unknown_element_wise_function_is_not_a_kind() -> None:
    assert recognise(Expr("Exp", [None])) is None
    assert recognise(Expr("Mul", [None, 2.0])) is None


@given(v=st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.integers(-10**15, 10**15),
    st.sampled_from(["$in * 2", "2 - min($i, 1)", "0.1 * $b / 17", "batch", "yes", "null",
                     "a: b", "x, y", "#c"])))
def test_a_written_value_reads_back_as_itself(v: Any) -> None:
    doc = load_text(f"x: {scalar(v)}\ny: [{scalar(v)}]\n", "<test>")
    assert doc.data["x"] == v and doc.data["y"] == [v]
