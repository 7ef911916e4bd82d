"""The ONNX file written in pieces (netspec/backends/onnx/wire.py): its bytes are exactly
what protobuf's own serializer gives for the same model with the weights filled in, and
the structure-only check still catches what onnx's full checker catches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto
from strategies import spec_texts

import netspec
from netspec.backends.onnx.export import export_onnx_file
from netspec.backends.onnx.wire import OnnxFile, _varint
from netspec.cli import main
from netspec.weights import load_weights

ROOT = Path(__file__).resolve().parent.parent
SPECS = ["digits_cnn", "unet", "resnet18", "mobilenet_v3_small", "yolov8n"]


def filled(file: OnnxFile) -> onnx.ModelProto:
    """The skeleton with every initializer's data set the ordinary way."""
    model = onnx.ModelProto()
    model.CopyFrom(file.skeleton)
    for t in model.graph.initializer:
        t.raw_data = file.arrays[t.name].tobytes()
    return model


def random_weights(graph: netspec.Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Any values of the right shapes (the bytes are what is compared, not the maths);
    BN variances positive so the folds are finite."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in {**graph.param_shapes(), **graph.buffer_shapes()}.items():
        a = rng.normal(size=shape).astype(np.float32)
        out[name] = np.abs(a) + 0.5 if name.endswith("running_var") else a
    return out


@given(n=st.integers(0, 2**63 - 1))
def test_varint_is_protobufs(n: int) -> None:
    # field 1 of ModelProto is an int64: its encoding is the key byte 0x08 and n's varint
    assert onnx.ModelProto(ir_version=n).SerializeToString() == b"\x08" + _varint(n)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("name", SPECS)
def test_bytes_equal_protobufs_serialization(name: str, precision: str) -> None:
    graph = netspec.load(ROOT / "specs" / f"{name}.yaml")
    file, _ = export_onnx_file(graph, random_weights(graph), verify=False,
                               precision=precision)
    data = file.tobytes()
    assert data == filled(file).SerializeToString()
    assert file.size == len(data)
    onnx.checker.check_model(data, full_check=True)  # the whole file, weights included


@settings(max_examples=15, suppress_health_check=[HealthCheck.too_slow])
@given(spec=spec_texts())
def test_generated_specs_bytes_equal_protobufs(spec: tuple[str, tuple[int, ...]]) -> None:
    graph = netspec.loads(spec[0])
    file, _ = export_onnx_file(graph, random_weights(graph), verify=False)
    assert file.tobytes() == filled(file).SerializeToString()


def test_cli_file_is_the_checked_model(tmp_path: Path) -> None:
    """What `netspec export` writes loads, passes the full checker on the file itself, and
    holds the weights it was given, tensor for tensor."""
    weights = tmp_path / "w.safetensors"
    out = tmp_path / "m.onnx"
    spec = str(ROOT / "specs" / "resnet18.yaml")
    assert main(["build", spec, "-o", str(weights)]) == 0
    assert main(["export", spec, "--weights", str(weights), "--no-verify", "-o",
                 str(out)]) == 0
    onnx.checker.check_model(str(out), full_check=True)
    model = onnx.load(str(out))
    tensors, _ = load_weights(weights)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    fc = "fc.weight"  # the classifier is not folded into anything: stored as trained
    np.testing.assert_array_equal(inits[fc], tensors[fc])


def _digits() -> OnnxFile:
    graph = netspec.load(ROOT / "specs" / "digits_cnn.yaml")
    return export_onnx_file(graph, random_weights(graph), verify=False)[0]


def test_check_catches_a_weight_of_the_wrong_shape() -> None:
    """The classifier's weight one column too wide for its input: shape inference on the
    weight-as-input finds it, as onnx's checker does on the whole file."""
    file = _digits()
    gemm = next(n for n in file.skeleton.graph.node if n.op_type == "Gemm")
    t = next(t for t in file.skeleton.graph.initializer if t.name == gemm.input[1])
    wrong = np.zeros((t.dims[0], t.dims[1] + 1), np.float32)
    del t.dims[:]
    t.dims.extend(wrong.shape)
    file.arrays[t.name] = wrong
    with pytest.raises(onnx.shape_inference.InferenceError, match="mismatch"):
        onnx.checker.check_model(file.tobytes(), full_check=True)  # the reference
    with pytest.raises(onnx.shape_inference.InferenceError, match="mismatch"):
        file.check()


def test_check_catches_a_weight_of_the_wrong_type() -> None:
    file = _digits()
    t = file.skeleton.graph.initializer[0]
    file.arrays[t.name] = file.arrays[t.name].astype(np.float16)
    t.data_type = TensorProto.FLOAT16
    with pytest.raises(onnx.shape_inference.InferenceError):
        onnx.checker.check_model(file.tobytes(), full_check=True)
    with pytest.raises(onnx.shape_inference.InferenceError):
        file.check()


def test_check_catches_an_undefined_tensor() -> None:
    file = _digits()
    file.skeleton.graph.node[-1].input[0] = "nowhere"
    with pytest.raises(onnx.checker.ValidationError, match="nowhere"):
        file.check()


def test_skeleton_and_arrays_must_agree() -> None:
    file = _digits()
    name = file.skeleton.graph.initializer[0].name
    with pytest.raises(AssertionError, match="does not fill"):
        OnnxFile(file.skeleton, {**file.arrays, name: file.arrays[name].astype(np.float64)})
    t = TensorProto()
    t.CopyFrom(file.skeleton.graph.initializer[0])
    t.raw_data = b"\0"
    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(file.skeleton)
    skeleton.graph.initializer[0].CopyFrom(t)
    with pytest.raises(AssertionError, match="data"):
        OnnxFile(skeleton, file.arrays)


@pytest.mark.parametrize("name", SPECS)
def test_probe_infers_the_shapes_the_whole_model_does(name: str) -> None:
    """The checker's probe (weights as typed inputs, constants kept) gives shape inference
    what the whole model gives it: every intermediate tensor's inferred type is the same."""
    graph = netspec.load(ROOT / "specs" / f"{name}.yaml")
    file, _ = export_onnx_file(graph, random_weights(graph), verify=False)
    whole = onnx.shape_inference.infer_shapes(filled(file), strict_mode=True)
    probe = onnx.shape_inference.infer_shapes(file.probe(), strict_mode=True)
    assert whole.graph.value_info, "nothing inferred"
    assert {v.name: v.type for v in probe.graph.value_info} == \
        {v.name: v.type for v in whole.graph.value_info}
    moved = {v.name for v in probe.graph.input} - {v.name for v in whole.graph.input}
    assert moved and moved <= set(file.arrays)
